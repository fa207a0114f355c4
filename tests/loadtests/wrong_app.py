"""A WSGI app that answers the family's paths wrongly, for the load tests' failure checks.

``/hello`` answers 200 with a body one character off, ``/sleep`` a 503 (a server shedding
load), ``/cpu`` a 404, and ``/ws`` the 501 that every era but ASGI answers to a WebSocket
handshake: a workload must count each as a failure of its own kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

ANSWERS = {
    "/hello": ("200 OK", b"Hello, World!\n"),  # a capital W: the family says "world"
    "/sleep": ("503 Service Unavailable", b"busy\n"),
    "/cpu": ("404 Not Found", b"no cpu here\n"),
    "/ws": ("501 Not Implemented", b"no WebSocket here\n"),
}


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    status, body = ANSWERS.get(environ.get("PATH_INFO", ""), ("404 Not Found", b"?\n"))
    start_response(
        status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    )
    return [body]
