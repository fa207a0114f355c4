"""The ASGI server: configuration, the listening socket, the sweeper, a graceful stop, main().

The order of a server's life, each step for a reason::

    load the app (ASGI 3, ASGI 2 or WSGI)          an error here is a sentence, not a trace
    lifespan startup                               before anything listens (Lifespan spec)
    listen, print the ready line                   clients may now connect
    serve: connections and tasks on one loop       the sweeper expires the slow ones
    SIGTERM / SIGINT:
      stop accepting                               the listening socket closes
      idle connections closed, busy ones finish    "Connection: close", WebSockets get 1001
      wait up to graceful_timeout                  then cancel what is left, and close
      lifespan shutdown                            after the last connection (Lifespan spec)
    exit 0                                         (1 if startup or shutdown failed)
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import os
import resource
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import websocket as rfc6455
from ..cli import add_config_options, base_parser, ready_line
from ..http import Limits
from ..trace import Tracer
from .connection import Connection
from .http import HttpProtocol
from .lifespan import Lifespan
from .types import AnyApp, ASGIApp, Receive, Scope, Send
from .wsgi import WSGIAdapter

__all__ = ["Config", "Server", "load_app", "main"]

SERVER_SOFTWARE = b"gatewaylab-asgi/0.1"


@dataclass(frozen=True)
class Config:
    app: str = "apps.asgi:app"
    host: str = "127.0.0.1"
    port: int = 8000
    loop: str = "asyncio"  # or "uvloop", where it is installed
    interface: str = "auto"  # asgi3, asgi2 or wsgi; auto tells them apart
    lifespan: str = "auto"  # on, off
    root_path: str = ""  # where a proxy mounted us; scope["root_path"]
    # 503 past this many open connections. The course's C10k target, with headroom for
    # the 10,000-connection benchmark; uvicorn's limit_concurrency is off by default.
    max_connections: int = 10240
    idle_timeout: float = 5.0  # keep-alive wait for the next request (uvicorn, hypercorn: 5 s)
    request_timeout: float = 10.0  # a whole head, or the next piece of a body (slowloris)
    graceful_timeout: float = 10.0  # on SIGTERM, time left to in-flight requests
    ws_max_size: int = rfc6455.MAX_MESSAGE
    ws_ping_interval: float = 20.0  # websockets and uvicorn: 20 s
    ws_ping_timeout: float = 20.0
    wsgi_threads: int = 8  # the pool of the WSGI adapter, as the wsgi era's default
    backlog: int = 2048  # the listen() queue, as uvicorn and gunicorn
    limits: Limits = field(default_factory=Limits)
    trace: bool = False


class Server:
    """What every connection may reach: config, app, tracer, and the server-wide sets."""

    loop: asyncio.AbstractEventLoop

    def __init__(self, config: Config, app: AnyApp, websocket: bool = True) -> None:
        self.config = config
        self.app = app
        self.websocket = websocket  # False for a WSGI app: a handshake reaches it as HTTP
        self.tracer = Tracer(config.trace)
        self.software = SERVER_SOFTWARE
        self.connections: set[Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()  # the apps' tasks (strong references)
        self.state: dict[str, Any] = {}  # lifespan state, copied into every scope
        self.stopping = False

    async def serve(self) -> int:
        self.loop = loop = asyncio.get_running_loop()
        config = self.config
        lifespan = Lifespan(self.app, config.lifespan, self.state)
        if not await lifespan.startup():
            print("asgi: lifespan startup failed; not starting", file=sys.stderr)
            return 1
        listener = await loop.create_server(
            lambda: HttpProtocol(self), config.host, config.port, backlog=config.backlog
        )
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)  # only a flag: the loop does the work
        sweeper = loop.create_task(self._sweep(), name="sweeper")
        host, port = listener.sockets[0].getsockname()[:2]
        ready_line("asgi", host, port)
        await stop.wait()

        self.stopping = True
        listener.close()  # no new connections; the kernel refuses them from now on
        for connection in list(self.connections):
            connection.shutdown()
        deadline = loop.time() + config.graceful_timeout
        while (self.tasks or self.connections) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await self._cancel_the_rest()
        sweeper.cancel()
        return 0 if await lifespan.shutdown() else 1

    async def _cancel_the_rest(self) -> None:
        """Past the graceful bound: cancel the apps still running, drop the connections."""
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)  # an app may clean up, briefly
        for connection in list(self.connections):
            connection.transport.abort()
        await asyncio.sleep(0)  # let connection_lost() run

    async def _sweep(self) -> None:
        """Once per interval, let every connection check its deadline (see connection.py)."""
        config = self.config
        shortest = min(config.idle_timeout, config.request_timeout, config.ws_ping_interval)
        interval = max(0.05, min(1.0, shortest / 4))
        while True:
            await asyncio.sleep(interval)
            now = self.loop.time()
            for connection in list(self.connections):
                connection.expire(now)


# ======================================================================================
def load_app(config: Config) -> tuple[ASGIApp, bool]:
    """``module:attr`` -> an ASGI 3 callable, and whether it may take WebSockets."""
    module_name, _, attr = config.app.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attr or "app")
    except (ImportError, AttributeError) as error:
        raise SystemExit(f"asgi: cannot load the application {config.app!r}: {error}") from None
    interface = _interface_of(target) if config.interface == "auto" else config.interface
    if interface == "wsgi":
        # A WSGI app cannot hold a socket, so upgrades reach it as the plain GETs they are.
        return WSGIAdapter(target, config.wsgi_threads), False
    if interface == "asgi2":
        return _asgi2(target), True
    return target, True


def _interface_of(target: object) -> str:
    """ASGI 3 apps are coroutine functions (or objects with one as __call__); a class is a
    legacy ASGI 2 app (instantiated with the scope); any other callable is taken as WSGI."""
    call = getattr(target, "__call__", None)  # noqa: B004 (the method itself, not callable())
    if inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(call):
        return "asgi3"
    return "asgi2" if inspect.isclass(target) else "wsgi"


def _asgi2(factory: Callable[[Scope], Any]) -> ASGIApp:
    """ "Legacy Applications": ``factory(scope)`` returns the coroutine-taking instance."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await factory(scope)(receive, send)  # the instance takes receive and send

    return app


def raise_fd_limit(wanted: int) -> None:
    """Each connection is a file descriptor: lift the soft limit towards the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("asgi", "Era 4: the asyncio ASGI server (ASGI 3.0)", Config.app)
    add = parser.add_argument
    add("--loop", choices=("asyncio", "uvloop"), default=Config.loop, help="default %(default)s")
    add("--interface", choices=("auto", "asgi3", "asgi2", "wsgi"), default=Config.interface)
    add("--lifespan", choices=("auto", "on", "off"), default=Config.lifespan)
    add("--root-path", default=Config.root_path, help="the prefix a proxy mounted the app at")
    # The rest from the Config dataclass (servers/cli.py): types and defaults from one place.
    seconds = "idle_timeout request_timeout graceful_timeout ws_ping_interval ws_ping_timeout"
    options = [("max_connections", "past it, 503"), *((n, "seconds") for n in seconds.split())]
    options += [("ws_max_size", "bytes in one WebSocket message")]
    add_config_options(parser, Config, [*options, ("wsgi_threads", "threads for a WSGI app")])
    args = parser.parse_args(argv)
    if args.max_connections < 1 or args.wsgi_threads < 1 or args.ws_max_size < 1:
        parser.error("--max-connections, --wsgi-threads and --ws-max-size must be at least 1")
    config = Config(**vars(args))
    loop_factory = None
    if config.loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            parser.error("--loop uvloop: uvloop is not installed (pip install uvloop)")
        loop_factory = uvloop.new_event_loop
    app, websocket = load_app(config)
    raise_fd_limit(config.max_connections + 100)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        status = runner.run(Server(config, app, websocket).serve())
    if threading.active_count() > 1:
        # A WSGI app's thread still blocked after the graceful bound cannot be cancelled
        # (a task can be, a thread cannot be told anything), and the interpreter would
        # wait for it at exit. The bound is a promise: leave without it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


if __name__ == "__main__":
    sys.exit(main())
