"""What the gateway interfaces share: CGI's variables in, CGI's response format out.

CGI (RFC 3875) defined two things that outlived it:

* the **meta-variables** (§4.1): REQUEST_METHOD, SCRIPT_NAME, PATH_INFO, QUERY_STRING,
  HTTP_* and the rest. CGI puts them in a process environment; FastCGI sends the very same
  names as PARAMS records; WSGI's ``environ`` is the same names in a dict. One function
  builds them here, so the three eras cannot drift apart on a security rule;
* the **response format** (§6): header lines with the CGI fields Status, Location and
  Content-Type, a blank line, the body. A CGI script prints it on stdout, and a FastCGI
  application sends it in STDOUT records; one parser reads it for both.

The security rules of both directions live here too (see ../shared/reference/specs.md
§1.2, §1.7, §2.10): no HTTP_PROXY (httpoxy), no header names with "_" (X-Foo vs X_Foo),
no credentials passed on, and a script's header lines checked like a client's, because a
broken or hostile script is an input too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

from .http import NEED_DATA, Data, Request, ServerConnection
from .http.grammar import FORBIDDEN_IN_VALUE, OWS, TOKEN

__all__ = [
    "HOP_BY_HOP",
    "WSGI_BAD_VALUE",
    "WSGI_STATUS",
    "WSGI_TOKEN",
    "BadGateway",
    "CgiResponse",
    "Peer",
    "body_pieces",
    "connection_variables",
    "find_head_end",
    "http_variables",
    "meta_variables",
    "parse_cgi_response",
]


@dataclass(frozen=True)
class Peer:
    """Both ends of the client's connection, as the meta-variables need them."""

    server_addr: str
    server_port: int
    remote_addr: str
    remote_port: int


# §4.1.18: fields never passed as HTTP_*: those already given as CONTENT_*, credentials
# (§9.2), "Proxy" (its HTTP_PROXY would redirect the script's own outgoing HTTP: httpoxy,
# CVE-2016-5385 and siblings), and the connection-level fields, which describe the
# client's connection to us, not the request (§4.1.18 allows dropping them).
NOT_PASSED = frozenset(
    {
        b"content-length",
        b"content-type",
        b"authorization",
        b"proxy-authorization",
        b"proxy",
        b"connection",
        b"keep-alive",
        b"te",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
    }
)


def http_variables(request: Request) -> dict[str, bytes]:
    """The request's header fields as HTTP_* meta-variables (RFC 3875 §4.1.18)."""
    variables: dict[str, bytes] = {}
    for name, value in request.headers:
        # A "_" would make X-Foo and X_Foo the same variable, and let a client forge a
        # header that a proxy in front thought it had removed: dropped, as nginx does.
        if name in NOT_PASSED or b"_" in name:
            continue
        key = "HTTP_" + name.decode("ascii").upper().replace("-", "_")
        if key in variables:
            # §4.1.18: repeated fields become one value with the same meaning.
            separator = b"; " if name == b"cookie" else b", "
            variables[key] += separator + value
        else:
            variables[key] = value
    return variables


def connection_variables(
    peer: Peer, server_software: str, document_root: str = ""
) -> dict[str, bytes]:
    """The meta-variables that stay the same for every request of one connection.

    A server that keeps a connection alive (CGI's connection process, a FastCGI gateway's
    client) can build these once and hand them to :func:`meta_variables` for each request,
    instead of formatting the same ports and addresses again every time."""
    variables = {
        "GATEWAY_INTERFACE": b"CGI/1.1",  # §4.1.4
        "SERVER_SOFTWARE": server_software.encode(),  # §4.1.17
        "SERVER_PORT": str(peer.server_port).encode(),  # §4.1.15: even the default port
        "SERVER_ADDR": peer.server_addr.encode(),
        "REMOTE_ADDR": peer.remote_addr.encode(),  # §4.1.8
        "REMOTE_HOST": peer.remote_addr.encode(),  # §4.1.9: the address stands in
        "REMOTE_PORT": str(peer.remote_port).encode(),
    }
    if document_root:
        variables["DOCUMENT_ROOT"] = os.fsencode(document_root)
    return variables


_HOST_PORT = re.compile(rb":[0-9]*$")


def meta_variables(
    request: Request,
    peer: Peer,
    *,
    script_name: str,
    path_info: str,
    content_length: int,
    server_software: str,
    document_root: str = "",
    script_filename: str = "",
    method: bytes | None = None,
    target: bytes | None = None,
    connection: dict[str, bytes] | None = None,
) -> dict[str, bytes]:
    """Every meta-variable of RFC 3875 §4.1, plus the de-facto ones real scripts expect.

    ``method``/``target`` override the request's own for a local redirect (§6.2.2), which
    is served as a new GET without the first request's body. Values are bytes: header
    bytes reach the application exactly as the client sent them; each era decodes them
    the way its interface says (WSGI: latin-1 str). ``connection``, if given, is what
    :func:`connection_variables` returned for this peer, server_software and
    document_root (and anything else constant the caller adds, e.g. CGI's PATH): it is
    copied, not rebuilt.
    """
    method = method or request.method
    target = target or request.target
    host = request.headers.get(b"host") or b""
    if connection is None:
        connection = connection_variables(peer, server_software, document_root)
    variables = connection.copy()
    # §4.1.14: the name the client asked for (Host without its port), else our address.
    variables["SERVER_NAME"] = _HOST_PORT.sub(b"", host) or peer.server_addr.encode()
    variables["SERVER_PROTOCOL"] = b"HTTP/" + request.http_version  # §4.1.16: the request's
    variables["REQUEST_METHOD"] = method  # §4.1.12
    variables["REQUEST_URI"] = target
    variables["QUERY_STRING"] = target.partition(b"?")[2]  # §4.1.7: always set, still encoded
    variables["SCRIPT_NAME"] = script_name.encode("latin-1")  # §4.1.13: set even when empty
    variables["PATH_INFO"] = path_info.encode("latin-1")  # §4.1.5: decoded
    # File names are the file system's bytes (os.fsencode), URL parts the request's bytes
    # (latin-1): PATH_TRANSLATED joins the two as bytes, so that neither is re-encoded.
    if document_root and path_info:  # §4.1.6: PATH_TRANSLATED only when there is a PATH_INFO
        variables["PATH_TRANSLATED"] = os.fsencode(document_root) + path_info.encode("latin-1")
    if script_filename:
        variables["SCRIPT_FILENAME"] = os.fsencode(script_filename)
    if method == request.method:  # a local redirect's GET has no body and no type
        if content_length:  # §4.1.2: only with a body, and then its de-chunked length
            variables["CONTENT_LENGTH"] = str(content_length).encode()
        if (content_type := request.headers.get(b"content-type")) is not None:
            variables["CONTENT_TYPE"] = content_type  # §4.1.3
    # The HTTP_* variables go last, and can never replace one of ours: their names all
    # start with "HTTP_", which none of the server's variables does.
    variables.update(http_variables(request))
    return variables


# ======================================================================================
# The CGI response (RFC 3875 §6)
# ======================================================================================
class BadGateway(Exception):
    """The application's response is not a valid CGI response: answer 502."""


@dataclass(frozen=True)
class CgiResponse:
    """A parsed CGI header section: what the server will answer, or where to go next."""

    status: int
    reason: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    local_redirect: bytes | None = None  # §6.2.2: a path the server must serve instead
    has_length: bool = False  # the script said its Content-Length: the framing is fixed


def find_head_end(buf: bytes | bytearray) -> tuple[int, int] | None:
    """(end of the header section, start of the body), or None if the blank line has not
    come yet. A script may end its lines with LF or CRLF (§6.2, §7.2), even mixed."""
    lf = buf.find(b"\n\n")
    crlf = buf.find(b"\n\r\n")  # also inside "\r\n\r\n", one byte after its start
    if crlf != -1 and (lf == -1 or crlf < lf):
        return (crlf - 1 if crlf and buf[crlf - 1] == 13 else crlf), crlf + 3  # 13: "\r"
    return None if lf == -1 else (lf, lf + 2)


# §6.3.4: a script must not send connection-level fields; they are the server's.
_CONNECTION_FIELDS = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"te", b"trailer"}
)
_STATUS = re.compile(rb"([1-9][0-9]{2})(?: (.*))?")
# §6.3: "name: value" on one line, no continuation lines. The name is a token, the value
# is free of control characters (RFC 9110 §5.5) and loses its optional whitespace (OWS)
# on both sides, and a CR before the LF is allowed. The value is matched greedily and its
# trailing OWS cut afterwards: a lazy ``(.*?)[ \t]*`` would try to end the match at every
# byte, three times the cost, and this runs on every line of every response.
_FIELD_LINE = re.compile(rb"(" + TOKEN + rb"):[ \t]*([^" + FORBIDDEN_IN_VALUE + rb"]*)\r?")
_FIELD_SHAPE = re.compile(rb"(" + TOKEN + rb"):.*")  # for the error message only


def parse_cgi_response(head: bytes) -> CgiResponse:
    """§6: turn a CGI header section into an HTTP status and headers, or a local redirect.

    The four response types of §6.2: a document (Content-Type, optional Status), a local
    redirect (Location with an absolute path and nothing else), a client redirect
    (Location with a URI: the server answers 302), and a client redirect with a document
    (Location, a 3xx Status, Content-Type and a body).
    """
    cgi_fields: dict[bytes, bytes] = {}  # Status, Location, Content-Type: at most once each
    headers: list[tuple[bytes, bytes]] = []
    has_length = False
    for line in head.split(b"\n"):
        # Checked as strictly as a client's request, so that a script cannot split our
        # response (uvicorn CVE-2020-7695).
        if (field := _FIELD_LINE.fullmatch(line)) is None:
            if (shape := _FIELD_SHAPE.fullmatch(line.removesuffix(b"\r"))) is not None:
                raise BadGateway(f"control character in the value of {shape[1].decode()}")
            raise BadGateway(f"malformed header line {line[:40]!r}")
        name, value = field[1], field[2].rstrip(OWS)
        lname = name.lower()
        if lname in (b"status", b"location", b"content-type"):
            if lname in cgi_fields:
                raise BadGateway(f"{name.decode()} sent twice (§6.3: at most once)")
            cgi_fields[lname] = value
        if lname == b"status" or lname in _CONNECTION_FIELDS:
            continue
        has_length = has_length or lname == b"content-length"
        headers.append((name, value))
    status_line = cgi_fields.get(b"status")
    location = cgi_fields.get(b"location")
    has_type = b"content-type" in cgi_fields

    if location is not None and location.startswith(b"/") and status_line is None and not has_type:
        if len(headers) > 1:
            raise BadGateway("a local redirect carries Location and nothing else (§6.2.2)")
        return CgiResponse(0, b"", (), local_redirect=location)
    if status_line is not None:
        match = _STATUS.fullmatch(status_line)
        if match is None or int(match[1]) < 200:
            raise BadGateway(f"malformed Status {status_line[:40]!r}")
        status, reason = int(match[1]), match[2] or b""
    elif location is not None:
        status, reason = 302, b""  # §6.2.3: a client redirect is answered with 302 Found
    else:
        status, reason = 200, b""  # §6.3.3: no Status means 200 OK
    if location is None and not has_type:
        raise BadGateway("neither Content-Type nor Location (§6.2: one of them is required)")
    return CgiResponse(status, reason, tuple(headers), has_length=has_length)


# ======================================================================================
# What a WSGI application's start_response() may say (PEP 3333), as str
# ======================================================================================
# Both WSGI hosts check them: servers/wsgi.py and the FastCGI application server's
# (fastcgi/responder.py). The rules are the HTTP core's grammar, for str instead of bytes.
WSGI_TOKEN = re.compile(TOKEN.decode("ascii"))
WSGI_BAD_VALUE = re.compile("[" + FORBIDDEN_IN_VALUE.decode("ascii") + "]")
WSGI_STATUS = re.compile(r"[1-9][0-9]{2} [^\x00-\x1f\x7f]*")  # "200 OK": 3 digits, a reason
# PEP 3333 "Other HTTP Features": hop-by-hop headers belong to the server's connection,
# never to the app.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers"}
    | {"transfer-encoding", "upgrade"}
)


# ======================================================================================
# The request body, on its way to an application in another process
# ======================================================================================
def body_pieces(
    conn: ServerConnection,
    request: Request,
    spool: IO[bytes] | None,
    piece_size: int,
    send_continue: Callable[[], None],
) -> Iterator[bytes | None]:
    """The request body as the CGI script's stdin or the FastCGI STDIN stream will take it:
    bytes, or None for "the core needs more bytes from the client's socket first".

    A chunked body was spooled whole before (CONTENT_LENGTH must be exact, RFC 3875 §4.2)
    and is read back from ``spool``; a Content-Length body streams straight from the core,
    and its 100 Continue goes out only when the application is about to get it."""
    if spool is not None:
        while piece := spool.read(piece_size):
            yield piece
        return
    if not request.content_length:
        return
    send_continue()
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            yield None
        elif isinstance(event, Data):
            yield event.data
        else:
            return
