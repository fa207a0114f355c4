"""The family app's shared logic: every byte the family answers is made here.

Why this module exists
----------------------
The course runs one application under four interfaces (CGI, FastCGI, WSGI, ASGI) so that the
*only* difference a student measures is how each interface hands the request to the app and
the answer back. That promise holds only if the answers are made in one place. So every
flavour of the app (``apps/wsgi.py``, ``apps/asgi.py``, and the CGI scripts and the FastCGI
responder of the later lessons) is a thin translator:

    interface's request ──> match(path, method) ──> builder(...) ──> Response ──> interface

* :func:`match` finds the :class:`Route` or raises :class:`ClientError` (404 or 405).
* Parameters are parsed by :func:`int_param` from the *raw* query string, as bytes, with the
  bounds of an :class:`IntParam`; a bad one raises :class:`ClientError` (400).
* Builders such as :func:`hello`, :func:`cpu` or :func:`page` return a :class:`Response`:
  status, headers and body as bytes, ready for any interface to send.

What a flavour keeps for itself is I/O: reading the body (a file in WSGI, messages in ASGI),
waiting (``time.sleep`` in a thread, an awaited timer in a task) and sending a body in
pieces (a generator in WSGI, ``more_body`` in ASGI). That difference is the lesson, so this
module holds no interface types at all: plain values in, plain values out.

House rules
-----------
1. Deterministic routes build the same bytes everywhere: no dates, pids or addresses in them.
   ``apps/README.md`` spells the contract out; the tests compare both against each other.
2. Every text body ends with one ``\\n`` so that ``curl`` leaves the prompt on a new line.
3. Every JSON body is ``json.dumps(value, sort_keys=True, separators=(",", ":"))`` plus
   ``\\n`` (ASCII, since ``ensure_ascii`` stays on): one spelling that any language can match.
   Only ``/env``, which people read and nobody compares, is indented by two spaces.
4. The request's faults are :class:`ClientError` carrying their 4xx answer (STYLE rule 8):
   a flavour catches that one class and sends ``error.response``.
"""

from __future__ import annotations

import functools
import hashlib
import http
import json
import os
import re
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    import jinja2


__all__ = [
    "CHAT_BACKLOG",
    "CHAT_MEMBERS",
    "CHAT_MESSAGE_BYTES",
    "CHAT_TITLE",
    "CPU_N",
    "ECHO_LIMIT",
    "EVENTS_COUNT",
    "EVENTS_DELAY_MS",
    "EVENT_STREAM",
    "HELLO_BODY",
    "HTML",
    "JSON",
    "OCTETS",
    "PAGE_TITLE",
    "READ_SIZE",
    "ROUTES",
    "SLEEP_MS",
    "STREAM_CHUNKS",
    "STREAM_DELAY_MS",
    "TEXT",
    "ClientError",
    "IntParam",
    "Response",
    "Route",
    "Stream",
    "UploadDigest",
    "bad_content_length",
    "bad_parameter",
    "canonical_json",
    "chat_page",
    "content_too_large",
    "cpu",
    "cpu_text",
    "cpu_work",
    "current_task_name",
    "echo_body",
    "echo_query",
    "env",
    "event_text",
    "events",
    "hello",
    "incomplete_body",
    "int_param",
    "json_safe",
    "match",
    "method_not_allowed",
    "not_found",
    "page",
    "render_chat_page",
    "render_page",
    "respond",
    "sleep_text",
    "slept",
    "status_line",
    "stream",
    "stream_line",
    "upgrade_required",
    "upload_json",
    "websocket_unsupported",
    "whoami",
]

# -- media types ----------------------------------------------------------------------------
TEXT: Final = "text/plain; charset=utf-8"
JSON: Final = "application/json"  # RFC 8259 §11: JSON is UTF-8 by definition, no charset
HTML: Final = "text/html; charset=utf-8"
OCTETS: Final = "application/octet-stream"  # RFC 9110 §8.3: what an unlabelled body may be
# HTML's server-sent events (WHATWG HTML §9.2): always UTF-8, so it takes no charset.
EVENT_STREAM: Final = "text/event-stream"

# -- sizes ----------------------------------------------------------------------------------
# Bodies are read in pieces of this size. 64 KiB is shutil.COPY_BUFSIZE on POSIX: big enough
# that the per-call cost vanishes, small enough that a hundred requests cost a few MiB.
READ_SIZE: Final = 64 * 1024
# /echo must hold the whole body to send it back, so it has a limit; /upload only hashes,
# so it has none. 1 MiB is nginx's default client_max_body_size.
ECHO_LIMIT: Final = 1024 * 1024


# -- routes ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    """One path of the family: what it accepts and what it promises."""

    path: str
    methods: tuple[str, ...]  # in the order the Allow header lists them
    deterministic: bool  # same bytes from every era for the same request
    example: str  # a request to try, shown on /page
    summary: str  # one line for /page and the README


_GET_HEAD: Final = ("GET", "HEAD")  # RFC 9110 §9.3.2: HEAD goes wherever GET goes

ROUTES: Final[tuple[Route, ...]] = (
    Route("/hello", _GET_HEAD, True, "/hello", "a fixed greeting"),
    Route("/echo", (*_GET_HEAD, "POST"), True, "/echo?say=hi", "the query or the body, sent back"),
    Route("/env", _GET_HEAD, False, "/env", "what the app received from its server, as JSON"),
    Route("/whoami", _GET_HEAD, False, "/whoami", "which era, process, thread and task answered"),
    Route("/sleep", _GET_HEAD, True, "/sleep?ms=100", "waits without using the CPU"),
    Route("/cpu", _GET_HEAD, True, "/cpu?n=100000", "busy work that holds the CPU"),
    Route("/stream", _GET_HEAD, True, "/stream?chunks=5&delay_ms=100", "lines, one at a time"),
    Route("/events", _GET_HEAD, True, "/events?count=5&delay_ms=1000", "server-sent events"),
    Route("/upload", ("POST",), True, "/upload", "the size and SHA-256 of the body"),
    Route("/page", _GET_HEAD, True, "/page", "this page, rendered with Jinja2"),
    Route("/ws", _GET_HEAD, False, "/ws", "a WebSocket echo (ASGI only)"),
    Route("/chat", _GET_HEAD, True, "/chat", "a chat page; its room is a WebSocket (ASGI only)"),
)
_ROUTES_BY_PATH: Final = {route.path: route for route in ROUTES}


# -- responses ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Response:
    """A whole answer. Header names are spelled as in the RFCs; ASGI lower-cases them."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True)
class Stream:
    """An answer sent in pieces: the head at once, then ``chunks`` with ``delay`` seconds
    between two of them. No Content-Length, so an HTTP/1.1 server must frame it itself
    (chunked transfer coding, RFC 9112 §7.1): that is what /stream exists to show, and
    /events is the same shape with another Content-Type."""

    status: int
    headers: tuple[tuple[str, str], ...]
    chunks: tuple[bytes, ...]
    delay: float


class ClientError(Exception):
    """The request broke the contract; ``response`` is the 4xx answer to send for it."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"{response.status}: {response.body.decode('utf-8', 'replace').strip()}")
        self.response = response


def status_line(status: int) -> str:
    """``"200 OK"``: the status as WSGI's start_response and CGI's Status header want it."""
    return f"{status} {http.HTTPStatus(status).phrase}"


def respond(
    body: bytes, content_type: str = TEXT, status: int = 200, *extra: tuple[str, str]
) -> Response:
    """A whole response with the two headers every non-streamed answer of the family has."""
    headers = (("Content-Type", content_type), ("Content-Length", str(len(body))), *extra)
    return Response(status, headers, body)


def _text(status: int, sentence: str, *extra: tuple[str, str]) -> Response:
    return respond(f"{sentence}\n".encode(), TEXT, status, *extra)


# -- refusals: the request's fault (4xx) ------------------------------------------------------
def not_found() -> Response:
    paths = [route.path for route in ROUTES]
    listing = ", ".join(paths[:-1]) + " and " + paths[-1]
    return _text(404, f"Not found: the family's routes are {listing}.")


def method_not_allowed(route: Route) -> Response:
    allow = ", ".join(route.methods)
    # RFC 9110 §15.5.6: a 405 MUST carry Allow with the methods the target supports.
    return _text(405, f"Method not allowed: {route.path} accepts {allow}.", ("Allow", allow))


def match(path: str, method: str) -> Route:
    """The route for this request, or :class:`ClientError` with its 404 or 405."""
    route = _ROUTES_BY_PATH.get(path)
    if route is None:
        raise ClientError(not_found())
    if method not in route.methods:
        raise ClientError(method_not_allowed(route))
    return route


@dataclass(frozen=True)
class IntParam:
    """An integer query parameter with inclusive bounds and the value used when it is absent."""

    name: str
    low: int
    high: int
    default: int


# Bounds keep one request from holding a worker for long: a minute of sleep at most (the
# usual proxy read timeout, nginx proxy_read_timeout 60 s), about a second of CPU, a stream
# of at most a thousand lines.
SLEEP_MS: Final = IntParam("ms", 0, 60_000, 100)
CPU_N: Final = IntParam("n", 0, 10_000_000, 100_000)
STREAM_CHUNKS: Final = IntParam("chunks", 1, 1_000, 5)
STREAM_DELAY_MS: Final = IntParam("delay_ms", 0, 10_000, 100)
# /events is paced for a person watching a browser: one event a second by default.
EVENTS_COUNT: Final = IntParam("count", 1, 1_000, 5)
EVENTS_DELAY_MS: Final = IntParam("delay_ms", 0, 10_000, 1_000)

# ASCII digits and an optional minus, nothing else: int() alone would also take "+1", " 1",
# "1_0" and other scripts' digits, which a CGI script in C or shell would not.
_INTEGER: Final = re.compile("-?[0-9]+")


def bad_parameter(param: IntParam) -> Response:
    return _text(
        400,
        f"Bad parameter: {param.name} must be one integer from {param.low} to {param.high}"
        f" (default {param.default}).",
    )


def int_param(raw_query: bytes, param: IntParam) -> int:
    """Read ``param`` from the raw query string (bytes, as sent: QUERY_STRING encoded latin-1,
    or the ASGI ``query_string``). Absent means the default; given twice, not an integer or
    out of bounds is :class:`ClientError` (400). Pairs are form-urlencoded (``+`` is a space,
    ``%31`` is ``1``); other parameters are ignored."""
    # Decoded latin-1, so that every byte (even one no URL should hold) is one character
    # and the percent-escapes below decode byte for byte too.
    pairs = parse_qsl(raw_query.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
    values = [value for name, value in pairs if name == param.name]
    if not values:
        return param.default
    if len(values) > 1 or not _INTEGER.fullmatch(values[0]):
        raise ClientError(bad_parameter(param))
    try:
        number = int(values[0])
    except ValueError:  # more than 4300 digits: sys.int_info.default_max_str_digits
        raise ClientError(bad_parameter(param)) from None
    if not param.low <= number <= param.high:
        raise ClientError(bad_parameter(param))
    return number


def content_too_large() -> Response:
    return _text(
        413,
        f"Content too large: /echo holds the body in memory, so it takes at most {ECHO_LIMIT}"
        " bytes; /upload takes any size.",
    )


def bad_content_length() -> Response:
    return _text(400, "Bad request: Content-Length must be a number of bytes.")


def incomplete_body() -> Response:
    return _text(400, "Bad request: the body ended before Content-Length bytes arrived.")


# -- /ws outside a WebSocket ----------------------------------------------------------------
def upgrade_required() -> Response:
    """ASGI's answer to plain HTTP on /ws. RFC 9110 §15.5.22: a 426 MUST send Upgrade."""
    return _text(
        426,
        "Upgrade required: /ws is a WebSocket echo; open it with a WebSocket client.",
        ("Upgrade", "websocket"),
    )


def websocket_unsupported() -> Response:
    """Every other interface's answer on /ws. Not a 426: a 426 must name an upgrade the
    server offers, and under CGI, FastCGI or WSGI no upgrade can reach the app (PEP 3333
    even forbids the app to send the hop-by-hop Upgrade header)."""
    return _text(
        501,
        "Not implemented: this interface cannot hand a live two-way connection to the"
        " application, so /ws is served only over ASGI (run the asgi era).",
    )


# -- JSON -----------------------------------------------------------------------------------
JSONValue = str | int | float | bool | None | list["JSONValue"] | dict[str, "JSONValue"]


def canonical_json(value: JSONValue, *, indent: int | None = None) -> bytes:
    """House rule 3: sorted keys, no spaces, ASCII only, one newline at the end."""
    separators = (",", ": ") if indent else (",", ":")
    text = json.dumps(value, sort_keys=True, separators=separators, indent=indent)
    return (text + "\n").encode("ascii")


def json_safe(value: object) -> JSONValue:
    """What an interface handed the app, made printable: bytes are decoded latin-1 (every byte
    maps to one character, so nothing is lost), tuples become lists, keys become strings, and
    anything else (a file, a function) becomes its repr."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    return repr(value)


# -- route builders -------------------------------------------------------------------------
HELLO_BODY: Final = b"Hello, world!\n"


def hello() -> Response:
    return respond(HELLO_BODY)


def echo_query(raw_query: bytes) -> Response:
    """GET /echo: the query string exactly as it came, still percent-encoded."""
    return respond(raw_query)


def echo_body(body: bytes, content_type: str | None) -> Response:
    """POST /echo: the body back, labelled as the request labelled it."""
    return respond(body, content_type or OCTETS)


def env(received: Mapping[str, object]) -> Response:
    """/env: the CGI environment, FastCGI params, WSGI environ or ASGI scope, as JSON."""
    return respond(canonical_json(json_safe(received), indent=2), JSON)


def current_task_name() -> str | None:
    """The asyncio task running this code, or None in a plain thread."""
    # Looked up, not imported: if nothing imported asyncio, no task can be running, and a
    # CGI script (a new interpreter per request) saves the import, about 60 ms.
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no event loop in this thread
        return None
    return task.get_name() if task is not None else None


def whoami(era: str) -> Response:
    """/whoami, built in the thread (and task) that serves the request, which is the point."""
    report: dict[str, JSONValue] = {
        "era": era,
        "pid": os.getpid(),
        "thread": threading.current_thread().name,
        "task": current_task_name(),
    }
    return respond(canonical_json(report), JSON)


def sleep_text(ms: int) -> bytes:
    return f"slept {ms} ms\n".encode("ascii")


def slept(ms: int) -> Response:
    """/sleep's answer once the flavour has waited ``ms`` milliseconds its own way."""
    return respond(sleep_text(ms))


# /cpu's work is a 32-bit linear congruential generator (the constants of Numerical Recipes),
# stepped n times from 0. It was chosen because its time grows linearly with n, it holds the
# CPU and, in CPython, the GIL, and any language (even bash or awk: every product fits in
# 53 bits) reproduces it: x = (1664525 * x + 1013904223) mod 2**32.
_LCG_MULTIPLIER: Final = 1664525
_LCG_INCREMENT: Final = 1013904223
_LCG_MASK: Final = 0xFFFF_FFFF


def cpu_work(n: int) -> int:
    x = 0
    for _ in range(n):
        x = (_LCG_MULTIPLIER * x + _LCG_INCREMENT) & _LCG_MASK
    return x


def cpu_text(n: int, result: int) -> bytes:
    return f"cpu n={n} result={result}\n".encode("ascii")


def cpu(raw_query: bytes) -> Response:
    """/cpu: parse n, do the work right here, in the caller's thread (or on its event loop)."""
    n = int_param(raw_query, CPU_N)
    return respond(cpu_text(n, cpu_work(n)))


def stream_line(index: int, chunks: int) -> bytes:
    """Chunk ``index`` (counting from 1) of ``chunks``."""
    return f"chunk {index} of {chunks}\n".encode("ascii")


def stream(raw_query: bytes) -> Stream:
    """/stream: the plan (lines and pause); the flavour paces and sends it."""
    chunks = int_param(raw_query, STREAM_CHUNKS)
    delay_ms = int_param(raw_query, STREAM_DELAY_MS)
    lines = tuple(stream_line(index, chunks) for index in range(1, chunks + 1))
    return Stream(200, (("Content-Type", TEXT),), lines, delay_ms / 1000)


def event_text(index: int, count: int) -> bytes:
    """Event ``index`` (counting from 1) of ``count``, in the event stream format (WHATWG
    HTML §9.2.6): an ``id:`` line, a ``data:`` line, and the blank line that dispatches it.
    The id is what a browser sends back as ``Last-Event-ID`` when it reconnects."""
    return f"id: {index}\ndata: event {index} of {count}\n\n".encode("ascii")


def events(raw_query: bytes) -> Stream:
    """/events: server-sent events, paced like /stream. ``Cache-Control: no-cache`` because
    an event stream is news, not a document: no cache may answer it from a stored copy
    (RFC 9111 §5.2.2.4)."""
    count = int_param(raw_query, EVENTS_COUNT)
    delay_ms = int_param(raw_query, EVENTS_DELAY_MS)
    chunks = tuple(event_text(index, count) for index in range(1, count + 1))
    headers = (("Content-Type", EVENT_STREAM), ("Cache-Control", "no-cache"))
    return Stream(200, headers, chunks, delay_ms / 1000)


def upload_json(size: int, sha256_hex: str) -> bytes:
    """/upload's body: ``{"bytes":N,"sha256":"<64 lower-case hex digits>"}`` and a newline."""
    return canonical_json({"bytes": size, "sha256": sha256_hex})


class UploadDigest:
    """Counts and hashes a body piece by piece, so an upload of any size costs O(1) memory."""

    def __init__(self) -> None:
        self.size = 0
        self._sha256 = hashlib.sha256()

    def update(self, piece: bytes) -> None:
        self.size += len(piece)
        self._sha256.update(piece)

    def response(self) -> Response:
        return respond(upload_json(self.size, self._sha256.hexdigest()), JSON)


# -- /page ----------------------------------------------------------------------------------
# One Environment for the process, made on first use (a CGI script that never renders the
# page saves importing jinja2): it compiles each template once and keeps it. Templates are
# code, so auto_reload is off (no stat() per request); restart the server after an edit.
# autoescape is on because the page shows route examples such as "?chunks=5&delay_ms=100",
# whose "&" must reach the browser as "&amp;".
@functools.cache
def _templates() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
        autoescape=True,
        auto_reload=False,
        undefined=jinja2.StrictUndefined,  # a misspelt variable is an error, not ""
        keep_trailing_newline=True,  # the page ends with the template file's final newline
        trim_blocks=True,  # a {% tag %} line leaves no blank line behind
        lstrip_blocks=True,
    )


PAGE_TITLE: Final = "gatewaylab: one app, four eras"


def render_page() -> bytes:
    template = _templates().get_template("page.html")
    return template.render(title=PAGE_TITLE, routes=ROUTES).encode()


def page() -> Response:
    return respond(render_page(), HTML)


# -- /chat ----------------------------------------------------------------------------------
# The page is the same bytes in every era; the room behind it (apps/chat.py) needs a live
# two-way connection, so only the asgi era hosts it. Its bounds keep one room from holding
# more than CHAT_MEMBERS * (CHAT_BACKLOG * CHAT_MESSAGE_BYTES + a socket's buffer) of memory:
# about 3 MiB of queued messages at the top, however the members behave.
CHAT_TITLE: Final = "gatewaylab: chat"
CHAT_MESSAGE_BYTES: Final = 1024  # one message, UTF-8 encoded; a longer one closes with 1009
CHAT_MEMBERS: Final = 100  # the 101st is accepted, told the room is full, and closed (1013)
CHAT_BACKLOG: Final = 32  # messages waiting for one member; one more and it is dropped (1008)


def render_chat_page() -> bytes:
    template = _templates().get_template("chat.html")
    return template.render(title=CHAT_TITLE, limit=CHAT_MESSAGE_BYTES).encode()


def chat_page() -> Response:
    """GET /chat in every era: the page whose script opens a WebSocket on /chat."""
    return respond(render_chat_page(), HTML)
