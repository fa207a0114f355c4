"""The vocabulary of the HTTP core: events, the two "nothing yet" signals, errors and limits.

Everything that crosses the boundary between the sans-IO core and a server is one of the
immutable events below: frozen dataclasses, and a NamedTuple for the hottest one. A server
never sees a half-parsed tuple or a raw dict: it gets a :class:`Request`, zero or more
:class:`Data`, one :class:`EndOfMessage`, and finally a :class:`ConnectionClosed`; it
answers with a :class:`Response` (after any number of :class:`InformationalResponse`),
:class:`Data` and :class:`EndOfMessage`.

Header names are lower-cased bytes on the way in (RFC 9110 §5.1: field names are
case-insensitive, so one canonical form saves every era from comparing case-blind), and
values are bytes with the surrounding optional whitespace removed (RFC 9112 §5.1). Bytes,
not str, because HTTP/1.1 is a byte protocol: each era decides how to turn them into its
own interface's types (CGI environment strings, WSGI latin-1 str, ASGI bytes).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import NamedTuple

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "ConnectionClosed",
    "Data",
    "EndOfMessage",
    "Event",
    "Headers",
    "InformationalResponse",
    "Limits",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "Request",
    "Response",
    "Signal",
]

# One header field: (lower-cased name, value), both bytes.
Header = tuple[bytes, bytes]


class Headers(tuple[Header, ...]):
    """The header fields of a message, in the order received, as (name, value) pairs.

    A tuple, so it is immutable and cheap; with two lookups every era needs.
    """

    __slots__ = ()

    def get(self, name: bytes, default: bytes | None = None) -> bytes | None:
        """The first value of ``name`` (lower-case), or ``default``."""
        for key, value in self:
            if key == name:
                return value
        return default

    def get_all(self, name: bytes) -> list[bytes]:
        """Every value of ``name`` (lower-case), in order."""
        return [value for key, value in self if key == name]

    def names(self) -> Iterator[bytes]:
        return (key for key, _ in self)


# ----------------------------------------------------------------------------------------
# The three outcomes of every reader (STYLE rule 2): an event, "need more data", or a
# ProtocolError. PAUSED is the fourth answer of the *connection*: the client's message is
# complete, and the next pipelined request must wait until the response has been sent.
class Signal(enum.Enum):
    NEED_DATA = "need data"
    PAUSED = "paused"

    def __repr__(self) -> str:
        return self.name


NEED_DATA = Signal.NEED_DATA
PAUSED = Signal.PAUSED


class Request(NamedTuple):
    """A request head (RFC 9112 §3, §5): everything before the body.

    The framing facts the core worked out are carried along, so that no era has to
    re-derive them (and get them subtly different, which is how smuggling starts).

    The one event that is not a frozen dataclass (STYLE rule 4), for speed: every request
    makes one, and a frozen dataclass sets each of its eight fields through
    ``object.__setattr__``, about 13,000 machine instructions per request against 4,000
    for a NamedTuple, which is just as immutable and typed (the difference was 4% of the
    ASGI server's whole cost per request). The price: it is also a tuple, so compare
    requests with requests only.
    """

    method: bytes
    target: bytes
    http_version: bytes  # b"1.1" or b"1.0"
    headers: Headers
    # -- derived by the core from the headers; servers read them, never recompute them --
    content_length: int | None = None  # None when chunked, 0 when there is no body
    chunked: bool = False
    keep_alive: bool = True  # what the client asked for (RFC 9112 §9.3)
    expects_continue: bool = False  # Expect: 100-continue on HTTP/1.1 (RFC 9110 §10.1.1)

    @property
    def path(self) -> bytes:
        """The target without its query, still percent-encoded (absolute-form reduced)."""
        target = self.target
        if not target.startswith(b"/") and b"://" in target:
            # absolute-form, RFC 9112 §3.2.2: keep only the path part of the URI.
            rest = target.split(b"://", 1)[1]
            slash = rest.find(b"/")
            query = rest.find(b"?")
            if slash == -1 or (query != -1 and query < slash):
                target = b"/" + (rest[query:] if query != -1 else b"")
            else:
                target = rest[slash:]
        return target.split(b"?", 1)[0]

    @property
    def query(self) -> bytes:
        """The query string without the "?", still percent-encoded; b"" when absent."""
        _, _, query = self.target.partition(b"?")
        return query

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


@dataclass(frozen=True, slots=True)
class InformationalResponse:
    """A 1xx interim response (RFC 9110 §15.2): 100 Continue is the one the core uses."""

    status_code: int
    headers: tuple[Header, ...] = ()
    reason: bytes = b""


@dataclass(frozen=True, slots=True)
class Response:
    """The head of a final response. Header names may be given in any case."""

    status_code: int
    headers: tuple[Header, ...] = ()
    reason: bytes = b""


@dataclass(frozen=True, slots=True)
class Data:
    """A piece of a message body, already de-chunked. Record boundaries mean nothing."""

    data: bytes

    def __repr__(self) -> str:
        # Long bodies are shown by size, as the tracer does: a repr must stay readable.
        if len(self.data) > 32:
            return f"Data(<{len(self.data)} bytes>)"
        return f"Data({self.data!r})"


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    """The end of a message body, with any trailer fields of a chunked body (RFC 9112 §7.1.2)."""

    trailers: Headers = field(default_factory=Headers)


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The client closed its side of the connection between two requests."""


Event = Request | InformationalResponse | Response | Data | EndOfMessage | ConnectionClosed


# ----------------------------------------------------------------------------------------
# Errors say *who* broke the protocol (h11's split): the peer, or our own side.
class ProtocolError(Exception):
    """Base class: the message explains, ``status`` is the HTTP status that answers it."""

    status: int = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status

    @property
    def reason(self) -> str:
        return HTTPStatus(self.status).phrase

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.args[0]}"


class RemoteProtocolError(ProtocolError):
    """The client sent something HTTP/1.1 does not allow. Answer ``status``, then close."""


class LocalProtocolError(ProtocolError):
    """We (the server, or the app through it) tried to send something illegal.

    Before the response started this becomes a 500; after, the connection is closed. The
    message names the offence, so the era can log it for the app's author.
    """

    status = 500


# ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Limits:
    """Every limit of the core, with the status that answers it and the precedents.

    The defaults sit where the hardened peers sit (see ../shared/reference/peers.md). Each
    server takes a ``Limits`` so that a lesson can lower one and show its status live.
    """

    # 414 URI Too Long. gunicorn caps the request line at 4094 bytes, nginx's
    # large_client_header_buffers holds 8 KiB, h11 bounds a whole head at 16 KiB. 8 KiB
    # admits every URL a browser produces in practice and matches nginx.
    max_request_line: int = 8190
    # 431 Request Header Fields Too Large, for one field line. gunicorn 8190, nginx 8 KiB.
    max_field_size: int = 8190
    # 431, for the whole header section (request line excluded). h11's 16 KiB limit on an
    # incomplete head is the tightest of the peers; nginx allows 4 x 8 KiB = 32 KiB. We take
    # 32 KiB so that a heavy but legitimate cookie jar passes where nginx would pass it.
    max_header_bytes: int = 32768
    # 431, for the number of field lines. gunicorn 100, daphne 500, h11 and uvicorn none.
    max_header_count: int = 100
    # 413 Content Too Large, for the de-chunked body. nginx's client_max_body_size is 1 MiB,
    # hypercorn caps WSGI bodies at 16 MiB, waitress at 1 GiB. The family's /upload route
    # must take a few MiB in the tests, so 16 MiB: generous for teaching, still bounded.
    max_body: int = 16 * 1024 * 1024
    # 400, for one chunk-size line with its extensions. h11 bounds it only through the
    # 16 KiB head limit; nobody needs more than a few bytes of chunk extension.
    max_chunk_line: int = 4096
