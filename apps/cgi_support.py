"""The family app as CGI scripts: what every Python script in ``apps/cgi-bin`` shares.

Theory of operation
-------------------
A CGI script is a whole program, started for one request and gone after it. Everything it
knows about the request is in three places, and everything it says goes to one:

* its **environment** (RFC 3875 §4.1): REQUEST_METHOD, QUERY_STRING (still percent-encoded),
  PATH_INFO, CONTENT_LENGTH, CONTENT_TYPE, HTTP_* and the rest;
* its **stdin** (§4.2): the request body, exactly CONTENT_LENGTH bytes of it (the server
  de-chunked it and counted it first), and no body at all when CONTENT_LENGTH is unset;
* its **stdout** (§6): header lines, a blank line, then the body. ``Status: 404 Not
  Found`` is how a script chooses its status; the server writes the HTTP status line,
  the framing (Content-Length or chunked) and the connection headers.

So the family's CGI flavour needs no framework: a script calls :func:`serve` with its
route and a function that builds the :class:`apps.family.Response`, and :func:`serve`
does the routing rules of apps/README.md (404, 405) and prints the answer. One file per
route, and the URL path *is* the file's path: ``/upload`` runs ``apps/cgi-bin/upload``.

Two things differ from the WSGI flavour, and both are the era's lesson:

* There is nothing to keep between requests: ``/page`` compiles its template in every
  process, and each request pays for starting Python and importing the family (compare
  ``/hello``, ``/hello.py`` and ``/hello.pl``, which import nothing).
* Streaming is ``write`` then ``flush``: a line leaves the process when it is flushed, and
  the server, seeing no Content-Length, frames what arrives as chunks (RFC 9112 §7.1).

A script's errors go to stderr, which the server sends to its own log, never to the
client (RFC 3875 §6.1 gives the client only stdout).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator

from apps import family

__all__ = ["body_pieces", "content_length", "raw_query", "send", "serve"]

Reply = family.Response | family.Stream


def serve(route: str, handler: Callable[[], Reply]) -> None:
    """Answer this request as the script for ``route`` (for example ``"/cpu"``).

    The path the family routes on is the route plus PATH_INFO, so ``/hello/`` (the script
    /hello with PATH_INFO "/") is an unknown path, as the contract says, and a wrong method
    gets its 405 before the handler runs (a 404 wins over a 405, a 405 over a parameter).
    """
    method = os.environ.get("REQUEST_METHOD", "GET")
    try:
        family.match(route + os.environ.get("PATH_INFO", ""), method)
        reply = handler()
    except family.ClientError as refusal:
        reply = refusal.response
    send(reply)


def send(reply: Reply) -> None:
    """Print a CGI response (RFC 3875 §6): Status and the headers, a blank line, the body.

    Lines end with LF, CGI's own line end (§6.2); the server accepts CRLF as well. For HEAD
    the body is left out (§4.3.3: the script MUST NOT send one), after the work is done,
    since Content-Length depends on it; a stream skips its pauses, having nothing to pace.
    """
    out = sys.stdout.buffer
    head = [f"Status: {family.status_line(reply.status)}"]
    head += [f"{name}: {value}" for name, value in reply.headers]
    out.write(("\n".join(head) + "\n\n").encode("latin-1"))
    if os.environ.get("REQUEST_METHOD") == "HEAD":
        out.flush()
        return
    if isinstance(reply, family.Response):
        out.write(reply.body)
        out.flush()
        return
    for index, chunk in enumerate(reply.chunks):
        if index:
            time.sleep(reply.delay)
        # Flushed line by line: without it the lines would wait in Python's buffer and
        # leave together at exit, and the client would see no stream at all.
        out.write(chunk)
        out.flush()


def raw_query() -> bytes:
    """QUERY_STRING as the bytes that were on the wire (§4.1.7: passed still encoded).

    ``os.environb`` is the environment as execve passed it, bytes and all; ``os.environ``
    is the same decoded as text, which a byte-exact /echo must not rely on."""
    return os.environb.get(b"QUERY_STRING", b"")


def body_pieces() -> Iterator[bytes]:
    """The request body from stdin, in pieces of at most ``family.READ_SIZE`` bytes.

    RFC 3875 §4.2: the script reads at most CONTENT_LENGTH bytes, and with no
    CONTENT_LENGTH there is no body (a CGI server always sets it when there is one, after
    de-chunking). Reading past it could wait for bytes that never come.
    """
    remaining = content_length() or 0
    while remaining > 0:
        # One read(2) on descriptor 0: a piece is whatever the pipe holds now, up to the
        # limit, rather than a wait until a whole 64 KiB has arrived.
        piece = os.read(0, min(family.READ_SIZE, remaining))
        if not piece:
            raise family.ClientError(family.incomplete_body())
        remaining -= len(piece)
        yield piece


def content_length() -> int | None:
    """CONTENT_LENGTH as a number, None when unset; a malformed one is a 400."""
    text = os.environ.get("CONTENT_LENGTH", "")
    if not text:
        return None
    if not text.isascii() or not text.isdigit():
        raise family.ClientError(family.bad_content_length())
    return int(text)
