"""Two optional ASGI extensions of the HTTP response, apart from the path a request takes.

The scope offers both (``scope["extensions"]``); an ordinary request never touches them,
so :mod:`servers.asgi.http` reads without them and calls in here only where an app uses
one (:class:`~servers.asgi.http.RequestCycle` is the state they work on):

* **http.response.trailers.** ``http.response.start`` says ``trailers=True``; the body ends
  in the TRAILERS state instead of DONE, and ``http.response.trailers`` messages (the last
  with ``more_trailers`` false) end the response. Trailers go out only in a chunked body
  to a client that asked for them; elsewhere they are dropped, as the extension allows.
* **http.response.pathsend.** Instead of the body, the absolute path of a file: the server
  sends it by sendfile(2) where it can, the kernel copying the file to the socket.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..http import EndOfMessage, Headers
from .connection import HIGH_WATER
from .types import ClientDisconnected, Message, checked_headers, invalid

if TYPE_CHECKING:
    from .http import RequestCycle

__all__ = ["announce_trailers", "pathsend", "send_trailers"]


# -- http.response.trailers --------------------------------------------------------------------
def announce_trailers(cycle: RequestCycle, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    """``trailers=True`` in http.response.start: keep them only where they may be sent, to a
    client that said ``TE: trailers`` (RFC 9110 §10.1.4) and in a chunked body."""
    request = cycle.request
    te = b",".join(request.headers.get_all(b"te")).lower()
    allowed = (
        b"trailers" in [t.strip(b" \t").split(b";")[0] for t in te.split(b",")]
        and request.http_version == b"1.1"
        and request.method != b"HEAD"
        and status not in (204, 304)
        and not any(name.lower() == b"content-length" for name, _ in headers)
    )
    cycle.trailers = [] if allowed else None  # None: not to be sent
    cycle.announced = True


def send_trailers(cycle: RequestCycle, message: Message) -> None:
    """One http.response.trailers; the last (``more_trailers`` false) ends the response."""
    headers = checked_headers(message.get("headers", ()), "http.response.trailers 'headers'")
    if cycle.trailers is not None:
        cycle.trailers.extend(headers)
    if message.get("more_trailers", False):
        return
    cycle.protocol.write(cycle.conn.send(EndOfMessage(Headers(cycle.trailers or ()))))
    cycle.finish()


# -- http.response.pathsend --------------------------------------------------------------------
async def pathsend(cycle: RequestCycle, message: Message) -> None:
    """The file at an absolute path as the whole body, by sendfile(2) if we can."""
    path = message.get("path")
    if type(path) is not str or not os.path.isabs(path):
        raise invalid("http.response.pathsend 'path'", "an absolute path", path)
    protocol, conn = cycle.protocol, cycle.conn
    # open() and fstat() of a local file take microseconds: not worth a thread.
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        protocol.write(cycle.head())
        framing = conn.send_file_data(size)  # None: HEAD, 204, 304 have no body
        if framing is not None:
            before, after = framing
            if before:
                protocol.write(before)
            protocol.trace_asgi(">", f"sendfile <{size} bytes>")
            await _sendfile(cycle, file, size)
            if after:
                protocol.write(after)
    protocol.write(conn.send(EndOfMessage()))
    cycle.finish()


async def _sendfile(cycle: RequestCycle, file: Any, size: int) -> None:
    protocol = cycle.protocol
    try:
        # asyncio uses os.sendfile() on a plain socket transport (the kernel copies
        # the file); its fallback reads and writes with flow control.
        await protocol.loop.sendfile(protocol.transport, file, 0, size)
    except NotImplementedError:  # uvloop has no sendfile: read and write ourselves
        while chunk := file.read(HIGH_WATER):
            protocol.write(chunk)
            await protocol.drain()
    except (ConnectionError, RuntimeError) as error:  # closed under our feet
        cycle.disconnect()
        raise ClientDisconnected(str(error)) from None
