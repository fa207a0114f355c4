"""``python -m loadtests.flup_server --bind HOST:PORT --app apps.wsgi:app``: flup, as a peer.

flup (Allan Saddi, 2005) was how Python web applications met FastCGI: its ``WSGIServer``
is a FastCGI application server that hosts a WSGI application, and Django's
``runfcgi`` and many Flask deployments ran on it behind nginx or lighttpd. The course
sets our application server (``python -m servers fastcgi-app``) beside it: in lesson 2,
behind our gateway, and in ``make bench``, behind the same nginx.

flup has a library interface only; this module is the command line around it, shaped
like our servers' so that the lesson runner and the bench can start it the same way:

* ``--bind HOST:PORT`` (port 0 picks a free one) or ``--bind /path/to/socket``, or
  ``--port N`` as every server of ours takes it;
* once it listens, one ready line on stdout with the real address, in the format
  servers/launch.py reads: ``gatewaylab flup ready on fastcgi://127.0.0.1:9000/ (pid N)``;
* SIGTERM or SIGINT end it with exit status 0 (flup's own handlers make ``run()``
  return; it then closes its socket).

flup runs with its defaults, as it was deployed: a thread per connection, taken from a
pool that grows without a cap, no multiplexing, and its FCGI_MAX_CONNS and FCGI_MAX_REQS
answers derived from the descriptor limit (see app_server.py for how ours differ).

One change, for TCP only: flup never sets TCP_NODELAY. It writes a response as several
records, each with its own ``send``, so with Nagle's algorithm the last one waits for
the web server's delayed ACK: 40 ms per request, whatever flup's code costs (measured
behind nginx: about 115 requests/s with flup's process 4% busy). Most flup deployments
used a Unix socket, where Nagle does not apply; over TCP we switch it off, as our own
application server does for itself, so that a comparison measures flup and not a timer.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any

from flup.server.fcgi import WSGIServer  # type: ignore[import-untyped]

from servers.fastcgi.app_server import parse_bind
from servers.fastcgi.responder import load_object

__all__ = ["main"]


class AnnouncingWSGIServer(WSGIServer):  # type: ignore[misc]
    """flup's WSGIServer, printing our ready line once its socket listens, with Nagle's
    algorithm off on its TCP connections (see the module's docstring).

    flup binds inside ``run()``, in ``_setupSocket``: the only moment at which the real
    port of ``--bind HOST:0`` is known, so that is where the line is printed."""

    _jobClass: Any  # flup's name: what it calls with each accepted socket

    def __init__(self, app: Any, **options: Any) -> None:
        super().__init__(app, **options)
        # flup makes one "job" per accepted socket: its Connection class, called as
        # job(sock, addr, *args). Wrapped, so the socket gets TCP_NODELAY first.
        make_connection = self._jobClass

        def connection(sock: socket.socket, addr: object, *args: object) -> object:
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return make_connection(sock, addr, *args)

        self._jobClass = connection

    def _setupSocket(self) -> socket.socket:
        sock: socket.socket = super()._setupSocket()
        address = sock.getsockname()
        if isinstance(address, str):
            where = f"unix:{address}"
        else:
            host, port = address[:2]
            where = f"fastcgi://{f'[{host}]' if ':' in host else host}:{port}/"
        print(f"gatewaylab flup ready on {where} (pid {os.getpid()})", flush=True)
        return sock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.flup_server",
        description="flup's FastCGI WSGIServer hosting a WSGI application (a peer of ours)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--bind", help="HOST:PORT or a Unix socket path (127.0.0.1:9000)")
    where.add_argument("--port", type=int, help="--bind HOST:PORT, as our servers take it")
    parser.add_argument("--host", default="127.0.0.1", help="with --port (%(default)s)")
    parser.add_argument(
        "--app", default="apps.wsgi:app", help="the WSGI application MODULE:ATTR (%(default)s)"
    )
    args = parser.parse_args(argv)
    bind = args.bind or "127.0.0.1:9000"
    if args.port is not None:
        bind = f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}"
    try:
        address = parse_bind(bind)
        app: Any = load_object(args.app)
    except (ValueError, ImportError, AttributeError) as error:
        parser.error(str(error))
    # flup wants a str for a Unix socket and a tuple for TCP, exactly what parse_bind gives.
    AnnouncingWSGIServer(app, bindAddress=address).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
