"""The family app as a WSGI application (PEP 3333): ``apps.wsgi:app``.

Theory of operation
-------------------
WSGI is a function call. The server turns an HTTP request into ``environ`` (the CGI
variables plus ``wsgi.*`` keys) and calls ``app(environ, start_response)`` in one of its
threads. The app calls ``start_response(status, headers)`` and returns an iterable of
bytes, which the server sends piece by piece and then closes. Everything below follows
from that shape:

* **One thread per request, blocking is fine.** The thread is the server's to spend, so
  ``/sleep`` simply calls ``time.sleep`` and ``/cpu`` simply computes. Concurrency is the
  size of the server's thread pool, and that is what the wsgi era measures.
* **The body is a file.** ``wsgi.input`` is read with ``read(size)``, never more than
  ``CONTENT_LENGTH`` bytes (PEP 3333: reading past it may block forever), in pieces of
  ``family.READ_SIZE`` so that an upload of any size costs the same memory.
* **Streaming is a generator.** ``/stream`` (and ``/events``, the same with server-sent
  events) returns a generator that sleeps between lines. The server sends each line as it
  is yielded; if the client goes away, the server's next write fails and it calls
  ``close()``, which ends the generator at its ``yield``. A thread asleep in
  ``time.sleep`` cannot be told earlier: compare the asgi flavour, which notices a
  disconnect while it waits.
* **No two-way connections.** There is no way to hand the socket to the app, so ``/ws``
  answers 501 (and the app may not even send an ``Upgrade`` header: hop-by-hop headers
  are the server's, PEP 3333 "Other HTTP Features"). ``/chat`` still answers its page,
  whose script then finds no WebSocket to talk to and says to run the asgi era.

Every byte of every answer comes from :mod:`apps.family`; this module only translates.
Run it under ``wsgiref.validate.validator`` to see that it keeps the rules (the tests do).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from wsgiref.types import StartResponse, WSGIEnvironment

from apps import family

__all__ = ["app"]

# What a route handler gives back: a whole response, or a stream to pace.
Reply = family.Response | family.Stream
Handler = Callable[[WSGIEnvironment], Reply]


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The WSGI entry point: route, build the reply, then hand the server its body."""
    reply = _dispatch(environ)
    start_response(family.status_line(reply.status), list(reply.headers))
    if environ["REQUEST_METHOD"] == "HEAD":
        # RFC 9110 §9.3.2: HEAD gets GET's headers without its body. The work is done (the
        # headers depend on it); only /stream's pacing is skipped, since it paces nothing.
        return []
    if isinstance(reply, family.Stream):
        return _paced(reply)
    # A one-item list, not the bytes themselves: iterating bytes would yield ints, and a
    # server would send them one at a time (PEP 3333 warns against returning a str).
    return [reply.body]


def _dispatch(environ: WSGIEnvironment) -> Reply:
    try:
        route = family.match(environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"])
        return _HANDLERS[route.path](environ)
    except family.ClientError as refusal:
        return refusal.response


def _paced(stream: family.Stream) -> Iterator[bytes]:
    """Yield the lines with pauses between them. A generator has close(), so a server that
    stops early (the client left) ends it at the yield it is suspended on."""
    for index, chunk in enumerate(stream.chunks):
        if index:
            time.sleep(stream.delay)
        yield chunk


# -- reading the body ---------------------------------------------------------------------
def _content_length(environ: WSGIEnvironment) -> int | None:
    """CONTENT_LENGTH as a number; None when it is absent or empty (PEP 3333 allows both)."""
    text = environ.get("CONTENT_LENGTH", "")
    if not text:
        return None
    if not text.isascii() or not text.isdigit():
        raise family.ClientError(family.bad_content_length())
    return int(text)


def _body_pieces(environ: WSGIEnvironment) -> Iterator[bytes]:
    """The request body in pieces of at most ``family.READ_SIZE`` bytes.

    Three cases, after PEP 3333 and its one extension:
    1. CONTENT_LENGTH given: read exactly that much; an early end is the client's fault.
    2. No CONTENT_LENGTH but ``wsgi.input_terminated`` true: the server promises that the
       stream ends where the body ends (it de-chunked it), so read until ``b""``.
    3. Neither: there is no body, and reading might wait forever.
    """
    stream = environ["wsgi.input"]
    remaining = _content_length(environ)
    if remaining is None:
        if environ.get("wsgi.input_terminated"):
            while piece := stream.read(family.READ_SIZE):
                yield piece
        return
    while remaining > 0:
        piece = stream.read(min(family.READ_SIZE, remaining))
        if not piece:
            raise family.ClientError(family.incomplete_body())
        remaining -= len(piece)
        yield piece


# -- route handlers -----------------------------------------------------------------------
def _raw_query(environ: WSGIEnvironment) -> bytes:
    # Native strings in environ hold bytes decoded as latin-1 (PEP 3333 "Unicode Issues"),
    # so encoding back gives the bytes that were on the wire.
    query: str = environ.get("QUERY_STRING", "")
    return query.encode("latin-1")


def _hello(environ: WSGIEnvironment) -> Reply:
    return family.hello()


def _echo(environ: WSGIEnvironment) -> Reply:
    if environ["REQUEST_METHOD"] != "POST":
        return family.echo_query(_raw_query(environ))
    declared = _content_length(environ)
    if declared is not None and declared > family.ECHO_LIMIT:
        # Refuse before reading a byte; the server deals with the unread body.
        raise family.ClientError(family.content_too_large())
    pieces: list[bytes] = []
    size = 0
    for piece in _body_pieces(environ):  # no Content-Length (case 2) still has to be bounded
        size += len(piece)
        if size > family.ECHO_LIMIT:
            raise family.ClientError(family.content_too_large())
        pieces.append(piece)
    return family.echo_body(b"".join(pieces), environ.get("CONTENT_TYPE"))


def _env(environ: WSGIEnvironment) -> Reply:
    return family.env(environ)


def _whoami(environ: WSGIEnvironment) -> Reply:
    # A server hosting this app for another era (the FastCGI app server) says which.
    return family.whoami(environ.get("gatewaylab.era", "wsgi"))


def _sleep(environ: WSGIEnvironment) -> Reply:
    ms = family.int_param(_raw_query(environ), family.SLEEP_MS)
    time.sleep(ms / 1000)  # blocks this thread only; the pool serves others meanwhile
    return family.slept(ms)


def _cpu(environ: WSGIEnvironment) -> Reply:
    return family.cpu(_raw_query(environ))


def _stream(environ: WSGIEnvironment) -> Reply:
    return family.stream(_raw_query(environ))


def _events(environ: WSGIEnvironment) -> Reply:
    return family.events(_raw_query(environ))


def _upload(environ: WSGIEnvironment) -> Reply:
    digest = family.UploadDigest()
    for piece in _body_pieces(environ):
        digest.update(piece)
    return digest.response()


def _page(environ: WSGIEnvironment) -> Reply:
    return family.page()


def _ws(environ: WSGIEnvironment) -> Reply:
    return family.websocket_unsupported()


def _chat(environ: WSGIEnvironment) -> Reply:
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
