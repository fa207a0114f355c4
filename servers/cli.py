"""The command line every era shares: ``python -m servers ERA [options]``.

Each era's module builds its parser with :func:`base_parser`, which adds the options
every server has (``--host``, ``--port``, ``--app``, ``--trace``), then adds its own
(``--threads`` for WSGI, ``--loop`` for ASGI, ...). Two conventions make the servers
easy to drive from tests, lessons and benchmarks alike:

* ``--port 0`` lets the kernel choose a free port;
* once listening, a server prints exactly one :func:`ready_line` to stdout, with the real
  URL, which ``servers.launch`` waits for. Everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "add_config_options", "base_parser", "ready_line"]

# Loopback by default: a teaching server must not be reachable from the network unless
# the instructor asks for it explicitly (--host 0.0.0.0).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def base_parser(
    era: str, description: str, default_app: str | None = None
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m servers {era}", description=description)
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="address to bind (default %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port to bind; 0 picks a free one"
    )
    if default_app is not None:
        parser.add_argument(
            "--app", default=default_app, help="the application to serve (default %(default)s)"
        )
    parser.add_argument(
        "--trace", action="store_true", help="print every byte and interface event (to stderr)"
    )
    return parser


def add_config_options(
    parser: argparse.ArgumentParser, config: type, options: Iterable[tuple[str, str]]
) -> None:
    """One ``--some-limit`` option per field of a server's Config dataclass: the default
    and its type come from the dataclass, so the two can never disagree."""
    for name, help_text in options:
        default = getattr(config, name)
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=type(default),
            default=default,
            help=help_text + " (default %(default)s)",
        )


def ready_line(era: str, host: str, port: int) -> None:
    """Announce that the server listens. The format is parsed by servers.launch.READY_RE."""
    shown = f"[{host}]" if ":" in host else host
    print(f"gatewaylab {era} ready on http://{shown}:{port}/ (pid {os.getpid()})", flush=True)
    sys.stdout.flush()
