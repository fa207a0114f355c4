"""An old app on the new server: a WSGI application behind the ASGI interface, on threads.

A WSGI app blocks: it reads ``wsgi.input`` and waits, it sleeps, it iterates a generator
at its own pace. On an event loop that would stop every other connection, so the adapter
runs each request on a thread of a pool, exactly as the wsgi era does, and the thread
talks to the loop through the request's ASGI ``receive`` and ``send``::

    event loop (the request's task)              a pool thread
    -------------------------------              -------------
    adapter(scope, receive, send)  -- run_in_executor -->  app(environ, start_response)
                                                           wsgi.input.read()
          receive()  <------ run_coroutine_threadsafe ------'  (blocks the thread only)
          send(body) <------ run_coroutine_threadsafe ------  each chunk of the iterable

Each crossing waits for the loop to finish the coroutine, so backpressure survives the
trip: a chunk is not taken from the iterable before ``send()`` (which waits for the
client to drain) has returned. The thread pool is also the capacity: with N threads, N
WSGI requests run at once, as in the wsgi era; the loop meanwhile serves everything else.

The environ is built by servers/gateway.py, like every other era's, so the CGI security
rules hold here too (no HTTP_PROXY, no header names with "_").
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote_to_bytes

from ..gateway import Peer, meta_variables
from ..http import Headers, Request
from .types import ClientDisconnected, ContractError, Message, Receive, Scope, Send

__all__ = ["WSGIAdapter"]

WSGIApp = Callable[[dict[str, Any], Callable[..., Callable[[bytes], None]]], Iterable[bytes]]
SERVER_SOFTWARE = "gatewaylab-asgi/0.1 (WSGI adapter)"
_STATUS = re.compile(r"([1-9][0-9]{2}) [^\x00-\x1f\x7f]*")


class WSGIAdapter:
    """An ASGI 3 app that runs ``app`` (WSGI, PEP 3333) on a pool of ``threads``."""

    def __init__(self, app: WSGIApp, threads: int = 8) -> None:
        self.app = app
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="asgi-wsgi")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            self.pool.shutdown(wait=False, cancel_futures=True)
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            raise ValueError(f"a WSGI app serves http scopes, not {scope['type']!r}")
        loop = asyncio.get_running_loop()
        exchange = _Exchange(self.app, scope, receive, send, loop)
        await loop.run_in_executor(self.pool, exchange.run)


class _Exchange:
    """One request on its thread: environ in, start_response and the iterable out."""

    def __init__(
        self,
        app: WSGIApp,
        scope: Scope,
        receive: Receive,
        send: Send,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.app, self.scope, self.loop = app, scope, loop
        self._receive, self._send = receive, send
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] | None = None
        self.head_sent = False

    def call(self, message: Message | None = None) -> Message | None:
        """Run receive() (no message) or send(message) on the loop, and wait for it here."""
        coroutine = self._receive() if message is None else self._send(message)
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()  # type: ignore[arg-type]

    def run(self) -> None:
        result: Iterable[bytes] | None = None
        try:
            result = self.app(self.environ(), self.start_response)
            if isinstance(result, list | tuple) and len(result) == 1 and not self.head_sent:
                self.send_body(result[0], more=False)  # one message: head and body together
                return
            for chunk in result:
                if chunk:  # PEP 3333: an empty chunk must not trigger the headers
                    self.send_body(chunk, more=True)
            self.send_body(b"", more=False)
        except ClientDisconnected:
            pass  # the client left; close() below ends the app's iterable
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()  # PEP 3333: on every path

    def environ(self) -> dict[str, Any]:
        scope = self.scope
        query = scope.get("query_string", b"")
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
        request = Request(
            method=scope["method"].encode("ascii"),
            target=raw_path + (b"?" + query if query else b""),
            http_version=scope.get("http_version", "1.1").encode("ascii"),
            headers=Headers(tuple(pair) for pair in scope["headers"]),
        )
        root_path = scope.get("root_path", "")
        # PEP 3333: PATH_INFO is the decoded path as latin-1 code points, without the
        # mount point (the WSGI compatibility section of the ASGI spec).
        path_info = unquote_to_bytes(raw_path).decode("latin-1")[len(root_path.encode()) :]
        length = request.headers.get(b"content-length")
        server = scope.get("server") or ("127.0.0.1", 80)
        client = scope.get("client") or ("", 0)
        variables = meta_variables(
            request,
            Peer(server[0], server[1] or 0, client[0], client[1]),
            script_name=root_path.encode("utf-8").decode("latin-1"),
            path_info=path_info,
            content_length=int(length) if length and length.isdigit() else 0,
            server_software=SERVER_SOFTWARE,
        )
        environ: dict[str, Any] = {k: v.decode("latin-1") for k, v in variables.items()}
        environ.update(
            {
                "wsgi.version": (1, 0),
                "wsgi.url_scheme": scope.get("scheme", "http"),
                "wsgi.input": _Input(self),
                "wsgi.errors": sys.stderr,
                "wsgi.multithread": True,
                "wsgi.multiprocess": False,
                "wsgi.run_once": False,
                "wsgi.input_terminated": True,  # the server ends the body (chunked or not)
                "gatewaylab.era": "asgi",
            }
        )
        return environ

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None and self.head_sent:
            raise exc_info[1].with_traceback(exc_info[2])  # PEP 3333: too late to change
        if self.headers is not None and exc_info is None:
            raise AssertionError("start_response() called twice without exc_info (PEP 3333)")
        match = _STATUS.fullmatch(status) if isinstance(status, str) else None
        if match is None:
            raise ContractError(f"expected a status like '200 OK' (str), got {status!r}")
        if not isinstance(headers, list) or not all(
            isinstance(h, tuple) and len(h) == 2 and all(isinstance(x, str) for x in h)
            for h in headers
        ):
            raise ContractError(f"expected the headers as a list of (str, str), got {headers!r}")
        self.status = int(match[1])
        self.headers = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in headers]
        return self.write

    def write(self, data: bytes) -> None:
        self.send_body(data, more=True)

    def send_body(self, data: bytes, more: bool) -> None:
        if type(data) is not bytes:
            raise ContractError(f"expected bytes from the application, got {type(data).__name__}")
        if not self.head_sent:
            if self.headers is None:
                raise ContractError("the application sent its body before start_response()")
            self.head_sent = True
            start = {"type": "http.response.start", "status": self.status, "headers": self.headers}
            self.call(start)
        self.call({"type": "http.response.body", "body": data, "more_body": more})


class _Input:
    """wsgi.input: the body, fetched from the loop one http.request message at a time."""

    def __init__(self, exchange: _Exchange) -> None:
        self.exchange = exchange
        self.buffer = bytearray()
        self.done = False

    def _fill(self) -> bool:
        if self.done:
            return False
        message = self.exchange.call()
        assert message is not None
        if message["type"] == "http.disconnect":
            raise ClientDisconnected("the client left while the body was read")
        self.buffer += message.get("body", b"")
        self.done = not message.get("more_body", False)
        return True

    def read(self, size: int | None = -1) -> bytes:
        while (size is None or size < 0 or len(self.buffer) < size) and self._fill():
            pass
        if size is None or size < 0:
            size = len(self.buffer)
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        limit = size if size is not None and size >= 0 else None
        while b"\n" not in self.buffer and (limit is None or len(self.buffer) < limit):
            if not self._fill():
                break
        end = self.buffer.find(b"\n") + 1 or len(self.buffer)
        return self.read(min(end, limit) if limit is not None else end)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines: list[bytes] = []
        while line := self.readline():
            lines.append(line)
            if hint is not None and 0 < hint <= sum(map(len, lines)):
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line
