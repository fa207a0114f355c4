"""The family app as a CGI-style FastCGI responder: ``apps.responder:respond``.

Theory of operation
-------------------
A FastCGI responder is a CGI program that does not exit (spec §1, §6.2). It gets the
request as the CGI variables (here the PARAMS, as ``dict[str, bytes]``), the body on
stdin, and prints a CGI response on stdout: a ``Status:`` line, header lines, a blank
line, the body. The FastCGI application server (``python -m servers fastcgi-app``) calls
:func:`respond` once per request, in one of its worker threads, which is what libfcgi's
``while (FCGI_Accept() >= 0)`` loop did in one process.

Compared with ``apps/wsgi.py``, the only differences are the interface's:

* **Routing** is on ``SCRIPT_NAME + PATH_INFO``, the whole decoded path. The responder
  owns the entire URL space, and the three front ends split that path three ways: our
  gateway sends ``SCRIPT_NAME=""`` and ``PATH_INFO=/hello``; nginx's stock
  ``fastcgi_params`` sends ``SCRIPT_NAME=/hello`` and no ``PATH_INFO`` at all; a CGI
  server that maps ``/hello`` to a script sends ``SCRIPT_NAME=/hello, PATH_INFO=""``.
  Their concatenation is the same path every time (RFC 3875 §3.3, the Script-URI).
* **The body** ends at CONTENT_LENGTH when it is given, and otherwise at the end of the
  STDIN stream: unlike a CGI pipe, FastCGI's STDIN always has a defined end (an empty
  record, §3.3), so a body nginx de-chunked without a CONTENT_LENGTH is still whole.
* **The answer** is printed, not returned: ``Status: 200 OK``, ``Content-Type``,
  ``Content-Length``, then the bytes; ``/stream`` and ``/events`` flush each piece, so
  that the server sends it as a STDOUT record at once and the HTTP front end can pass it on.
* The return value is the exit status a CGI program would have had: 0.

Every byte of every answer still comes from :mod:`apps.family`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import BinaryIO

from apps import family

__all__ = ["respond"]

ERA = "fastcgi"  # what /whoami reports: this responder runs inside the FastCGI app server

Reply = family.Response | family.Stream
Handler = Callable[[dict[str, bytes], BinaryIO], Reply]


def respond(params: dict[str, bytes], stdin: BinaryIO, stdout: BinaryIO) -> int:
    """One request: route, build the reply, print it as a CGI response. Returns 0."""
    method = params.get("REQUEST_METHOD", b"").decode("latin-1")
    reply = _dispatch(params, stdin, method)
    stdout.write(_cgi_head(reply))
    if method == "HEAD":
        # RFC 9110 §9.3.2: GET's headers, no body. The work was done (the headers depend on
        # it); only /stream's pacing is skipped, as in every flavour.
        return 0
    if isinstance(reply, family.Stream):
        stdout.flush()  # the head goes now, before the first pause
        for index, chunk in enumerate(reply.chunks):
            if index:
                time.sleep(reply.delay)
            stdout.write(chunk)
            stdout.flush()  # one STDOUT record per line, sent as soon as it is made
        return 0
    stdout.write(reply.body)
    return 0


def _cgi_head(reply: Reply) -> bytes:
    # RFC 3875 §6.3.3: the status is a header field of its own; §6.2: then a blank line.
    lines = [f"Status: {family.status_line(reply.status)}"]
    lines += [f"{name}: {value}" for name, value in reply.headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _dispatch(params: dict[str, bytes], stdin: BinaryIO, method: str) -> Reply:
    path = (params.get("SCRIPT_NAME", b"") + params.get("PATH_INFO", b"")).decode("latin-1")
    try:
        route = family.match(path, method)
        return _HANDLERS[route.path](params, stdin)
    except family.ClientError as refusal:
        return refusal.response


# -- reading the body ---------------------------------------------------------------------
def _body_pieces(params: dict[str, bytes], stdin: BinaryIO) -> Iterator[bytes]:
    """The body in pieces of at most ``family.READ_SIZE`` bytes: CONTENT_LENGTH of them
    when it is given (§6.2: STDIN carries at most that), else up to the end of STDIN."""
    text = params.get("CONTENT_LENGTH", b"")
    if not text:
        while piece := stdin.read(family.READ_SIZE):
            yield piece
        return
    if not text.isdigit():
        raise family.ClientError(family.bad_content_length())
    remaining = int(text)
    while remaining > 0:
        piece = stdin.read(min(family.READ_SIZE, remaining))
        if not piece:
            raise family.ClientError(family.incomplete_body())
        remaining -= len(piece)
        yield piece


def _raw_query(params: dict[str, bytes]) -> bytes:
    return params.get("QUERY_STRING", b"")


# -- route handlers -----------------------------------------------------------------------
def _hello(params: dict[str, bytes], stdin: BinaryIO) -> Reply:
    return family.hello()


def _echo(params: dict[str, bytes], stdin: BinaryIO) -> Reply:
    if params.get("REQUEST_METHOD") != b"POST":
        return family.echo_query(_raw_query(params))
    declared = params.get("CONTENT_LENGTH", b"")
    if declared.isdigit() and int(declared) > family.ECHO_LIMIT:
        raise family.ClientError(family.content_too_large())  # refused before reading
    pieces: list[bytes] = []
    size = 0
    for piece in _body_pieces(params, stdin):
        size += len(piece)
        if size > family.ECHO_LIMIT:
            raise family.ClientError(family.content_too_large())
        pieces.append(piece)
    content_type = params.get("CONTENT_TYPE", b"").decode("latin-1") or None
    return family.echo_body(b"".join(pieces), content_type)


def _env(params: dict[str, bytes], stdin: BinaryIO) -> Reply:
    return family.env(params)  # the params exactly as the web server sent them


def _whoami(params: dict[str, bytes], stdin: BinaryIO) -> Reply:
    return family.whoami(ERA)


def _sleep(params: dict[str, bytes], stdin: BinaryIO) -> Reply:
    ms = family.int_param(_raw_query(params), family.SLEEP_MS)
    time.sleep(ms / 1000)  # blocks this worker thread only
    return family.slept(ms)


def _cpu(params: dict[str, bytes], stdin: BinaryIO) -> Reply:
    return family.cpu(_raw_query(params))


def _stream(params: dict[str, bytes], stdin: BinaryIO) -> Reply:
    return family.stream(_raw_query(params))


def _events(params: dict[str, bytes], stdin: BinaryIO) -> Reply:
    return family.events(_raw_query(params))


def _upload(params: dict[str, bytes], stdin: BinaryIO) -> Reply:
    digest = family.UploadDigest()
    for piece in _body_pieces(params, stdin):
        digest.update(piece)
    return digest.response()


def _page(params: dict[str, bytes], stdin: BinaryIO) -> Reply:
    return family.page()


def _ws(params: dict[str, bytes], stdin: BinaryIO) -> Reply:
    return family.websocket_unsupported()


def _chat(params: dict[str, bytes], stdin: BinaryIO) -> Reply:
    # The page, as in every era; the WebSocket its script then opens fails here (see _ws),
    # and the page says so.
    return family.chat_page()


_HANDLERS: dict[str, Handler] = {
    "/hello": _hello,
    "/echo": _echo,
    "/env": _env,
    "/whoami": _whoami,
    "/sleep": _sleep,
    "/cpu": _cpu,
    "/stream": _stream,
    "/events": _events,
    "/upload": _upload,
    "/page": _page,
    "/ws": _ws,
    "/chat": _chat,
}
