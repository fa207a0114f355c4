"""--trace: what crosses the interface, in the format every era shares (servers/trace.py):
the environ handed over (long values cut), start_response, each body chunk as <N bytes>,
close(), and the pool thread that ran the request, all on the request's connection id."""

from __future__ import annotations

import re

from tests.conftest import ServerPool

from .support import Wire, get, start_wsgi, wait_for_output


def test_trace_shows_the_call_of_the_application(start_server: ServerPool) -> None:
    server = start_wsgi(start_server, "--trace", app="apps.wsgi:app")
    since = server.output_size()
    with Wire(server) as wire:
        wire.send(get("/stream?chunks=2&delay_ms=0", "X-Long: " + "v" * 200, "X-Accent: café"))
        assert wire.reply().status == 200
    log = wait_for_output(server, "[wsgi] close()", since)
    thread = re.search(r"(c\d+) \* request runs on thread (wsgi-worker-\d+)", log)
    assert thread, log
    cid = thread[1]
    expected = [
        "< [wsgi] environ REQUEST_METHOD=GET",
        "< [wsgi] environ PATH_INFO=/stream",
        "< [wsgi] environ QUERY_STRING=chunks=2&delay_ms=0",
        "< [wsgi] environ HTTP_X_LONG=" + "v" * 60 + "... (200 characters)",
        "< [wsgi] environ HTTP_X_ACCENT=caf\\xe9",  # escaped: no raw bytes reach a terminal
        "< [wsgi] environ wsgi.version=(1, 0)",
        "< [wsgi] environ wsgi.input=InputStream",
        "< [wsgi] environ wsgi.multithread=True",
        "> [wsgi] start_response '200 OK' [('Content-Type', 'text/plain; charset=utf-8')]",
        "> [wsgi] body <13 bytes>",
        "> [wsgi] close()",
    ]
    lines = [line.split(f" {cid} ", 1)[1] for line in log.splitlines() if f" {cid} " in line]
    positions = [lines.index(line) for line in expected if line in lines]
    assert len(positions) == len(expected), [line for line in expected if line not in lines]
    assert lines.count("> [wsgi] body <13 bytes>") == 2
    # In the order they happen: environ, start_response, the chunks, close().
    *environ, start, body, close = positions
    assert max(environ) < start < body < close


def test_trace_is_off_by_default(start_server: ServerPool) -> None:
    server = start_wsgi(start_server, app="apps.wsgi:app")
    with Wire(server) as wire:
        wire.send(get("/hello"))
        assert wire.reply().status == 200
    assert "[wsgi]" not in server.output()
