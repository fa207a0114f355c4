"""The wire inspector: the shared HTTP core with no application behind it (lesson 0).

``python -m servers.wire [--port N] [--trace]`` answers every request with what the core
made of it, so that a student can send bytes with curl or a raw socket and see, with
``--trace``, exactly what went over the wire and how the core framed it::

    GET /path?q HTTP/1.1
    body 12 bytes sha256 ...

It is not an era: it has no gateway interface at all, which is the point of lesson 0:
this much (reading and framing HTTP/1.1) every era needs before it can hand a request to
an application. It is also how the tests check the core, the tracer, the command-line
conventions (``--port 0``, the ready line, exit 0 on SIGTERM) and the harness against real
clients before any era lands. One thread per connection and no timeouts: a classroom and
test tool, never to be exposed.
"""

from __future__ import annotations

import hashlib
import signal
import socket
import sys
import threading
from types import FrameType

from servers.cli import base_parser, ready_line
from servers.http import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    EndOfMessage,
    InformationalResponse,
    ProtocolError,
    Request,
    ServerConnection,
)
from servers.trace import Tracer, next_connection_id


def serve_connection(sock: socket.socket, tracer: Tracer) -> None:
    cid = next_connection_id()
    tracer.note(cid, "open")
    conn = ServerConnection()
    request: Request | None = None
    body = hashlib.sha256()
    size = 0

    def send(data: bytes) -> None:
        tracer.wire(cid, ">", data)
        sock.sendall(data)

    try:
        while True:
            try:
                event = conn.next_event()
            except ProtocolError as error:
                send(conn.error_response(error))
                return
            if event is NEED_DATA:
                data = sock.recv(65536)
                tracer.wire(cid, "<", data)
                conn.receive_data(data)
            elif isinstance(event, Request):
                request, body, size = event, hashlib.sha256(), 0
                if event.expects_continue:
                    send(conn.send(InformationalResponse(100)))
            elif isinstance(event, Data):
                body.update(event.data)
                size += len(event.data)
            elif isinstance(event, EndOfMessage):
                assert request is not None
                text = (
                    f"{request.method.decode()} {request.target.decode()} "
                    f"HTTP/{request.http_version.decode()}\n"
                    f"body {size} bytes sha256 {body.hexdigest()}\n"
                )
                send(conn.send_response(200, [(b"Content-Type", b"text/plain")], text.encode()))
            elif event is PAUSED:
                if not conn.can_reuse:
                    return
                conn.start_next_cycle()
            elif isinstance(event, ConnectionClosed):
                return
    except OSError:
        return
    finally:
        tracer.closed(cid)
        sock.close()


def main(argv: list[str] | None = None) -> int:
    args = base_parser(
        "wire", "the shared HTTP core with no application: answers with what it parsed"
    ).parse_args(argv)
    tracer = Tracer(args.trace)
    listener = socket.create_server((args.host, args.port))
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()  # no I/O in a signal handler: the accept loop notices
        listener.close()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ready_line("wire", args.host, listener.getsockname()[1])
    while not stopping.is_set():
        try:
            sock, _ = listener.accept()
        except OSError:
            break
        threading.Thread(target=serve_connection, args=(sock, tracer), daemon=True).start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
