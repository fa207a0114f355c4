"""The ASGI applications the tests serve: ``--app tests.asgi.apps:probe`` (and a few others).

``probe`` routes on the path; each route is small enough to read beside the test that
uses it. Many break the ASGI contract on purpose, to watch the server refuse them.

Gates, as in tests/wsgi/apps.py: when a test must know where the app is (waiting for a
disconnect, between two chunks), the app writes ``TOKEN.WHAT`` files into
``$GATEWAYLAB_PROBE_DIR`` and the test waits for them; files, because the app runs in the
server's process and the test in its own. ``?token=T`` names the gate.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from servers.asgi.types import Message, Receive, Scope, Send

__all__ = ["no_lifespan", "probe", "slow_startup", "startup_fails"]

TEXT = [(b"content-type", b"text/plain; charset=utf-8")]


def probe_dir() -> Path:
    return Path(os.environ.get("GATEWAYLAB_PROBE_DIR") or tempfile.gettempdir())


def mark(token: str, what: str, content: str = "") -> None:
    """Leave ``token.what`` for the test, whole: written under another name and renamed,
    because a test that sees the file may read it at once (write_text creates it empty
    first, and one run read it in that instant)."""
    if token:
        partial = probe_dir() / f"{token}.{what}.partial"
        partial.write_text(content)
        os.replace(partial, probe_dir() / f"{token}.{what}")


def _query(scope: Scope) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}


async def _reply(send: Send, body: bytes, status: int = 200, headers: Any = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or TEXT})
    await send({"type": "http.response.body", "body": body})


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"bytes": value.decode("latin-1")}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


# -- lifespan ----------------------------------------------------------------------------------
async def _lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["greeting"] = "hello from startup"
            scope["state"]["shared"] = []  # one list, seen by every request (shallow copy)
            mark(os.environ.get("GATEWAYLAB_LIFESPAN_TOKEN", ""), "startup")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            mark(os.environ.get("GATEWAYLAB_LIFESPAN_TOKEN", ""), "shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return


# -- HTTP --------------------------------------------------------------------------------------
async def probe(scope: Scope, receive: Receive, send: Send) -> Any:
    if scope["type"] == "lifespan":
        await _lifespan(scope, receive, send)
    elif scope["type"] == "websocket":
        await _websocket(scope, receive, send)
    else:
        path = scope["path"].removeprefix(scope["root_path"])
        handler = ROUTES.get(path) or (_scope if path.startswith("/scope/") else _not_found)
        return await handler(scope, receive, send)  # /returns-value breaks the contract


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    await _reply(send, b"no such probe\n", 404)


async def _scope(scope: Scope, receive: Receive, send: Send) -> None:
    """The scope as JSON (bytes as {"bytes": latin-1}); the state is noted, then changed."""
    shown = _jsonable({k: v for k, v in scope.items() if k != "state"})
    shown["state"] = sorted(scope.get("state", {}))
    shown["shared"] = list(scope.get("state", {}).get("shared", []))
    if "state" in scope:
        scope["state"]["mine"] = True  # must not be seen by the next request's scope
        scope["state"].get("shared", []).append(1)  # the shared list: seen by all
    await _reply(send, json.dumps(shown).encode(), headers=[(b"content-type", b"application/json")])


async def _body_messages(scope: Scope, receive: Receive, send: Send) -> None:
    """Every http.request message, as [length, more_body] pairs, then the whole body's size."""
    seen = []
    while True:
        message = await receive()
        seen.append([len(message.get("body", b"")), message.get("more_body", False)])
        if not message.get("more_body", False):
            break
    await _reply(send, json.dumps(seen).encode())


async def _echo(scope: Scope, receive: Receive, send: Send) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    await _reply(send, body)


async def _wait_disconnect(scope: Scope, receive: Receive, send: Send) -> None:
    """Read the request, mark, wait for http.disconnect, then try to send (spec 2.4)."""
    token = _query(scope).get("token", "")
    await receive()
    mark(token, "entered")
    message = await receive()
    mark(token, "disconnect", message["type"])
    try:
        await _reply(send, b"too late\n")
    except OSError as error:
        mark(token, "send-raised", type(error).__name__)


async def _disconnect_after_response(scope: Scope, receive: Receive, send: Send) -> None:
    await _reply(send, b"done\n")
    message = await receive()  # the response is complete: http.disconnect at once
    mark(_query(scope).get("token", ""), "after", message["type"])


async def _sleep(scope: Scope, receive: Receive, send: Send) -> None:
    token = _query(scope).get("token", "")
    mark(token, "entered")
    await asyncio.sleep(float(_query(scope).get("s", "1")))
    await _reply(send, b"slept\n")
    mark(token, "answered")


async def _stream(scope: Scope, receive: Receive, send: Send) -> None:
    """``?mb=N``: N MiB in 64 KiB pieces, marking progress so a test can see a stall."""
    token, mib = _query(scope).get("token", ""), int(_query(scope).get("mb", "1"))
    await send({"type": "http.response.start", "status": 200, "headers": TEXT})
    piece = b"x" * 65536
    for i in range(mib * 16):
        await send({"type": "http.response.body", "body": piece, "more_body": True})
        mark(token, "progress", str(i + 1))
    await send({"type": "http.response.body", "body": b""})
    mark(token, "finished")


async def _no_receive(scope: Scope, receive: Receive, send: Send) -> None:
    """Never reads the body: the server must stop reading the socket for it."""
    token = _query(scope).get("token", "")
    mark(token, "entered")
    while not (probe_dir() / f"{token}.release").exists():
        await asyncio.sleep(0.05)
    await _reply(send, b"never read it\n")


async def _trailers(scope: Scope, receive: Receive, send: Send) -> None:
    headers = [*TEXT, (b"trailer", b"x-checksum")]
    await send({"type": "http.response.start", "status": 200, "headers": headers, "trailers": True})
    await send({"type": "http.response.body", "body": b"part 1\n", "more_body": True})
    await send({"type": "http.response.body", "body": b"part 2\n"})
    await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc123")]})


async def _pathsend(scope: Scope, receive: Receive, send: Send) -> None:
    path = _query(scope)["path"]
    size = os.path.getsize(path)
    headers = [(b"content-type", b"application/octet-stream")]
    if "nolength" not in _query(scope):
        headers.append((b"content-length", str(size).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.pathsend", "path": path})


async def _app_framing(scope: Scope, receive: Receive, send: Send) -> None:
    """Sends its own Transfer-Encoding, which the server must ignore ("Response Start")."""
    await _reply(send, b"x", headers=[*TEXT, (b"Transfer-Encoding", b"chunked")])


async def _whoami(scope: Scope, receive: Receive, send: Send) -> None:
    task = asyncio.current_task()
    await _reply(send, (task.get_name() if task else "none").encode())


# -- apps that break the contract --------------------------------------------------------------
async def _raise_before(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("boom before the response")


async def _raise_after(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": TEXT})
    await send({"type": "http.response.body", "body": b"half", "more_body": True})
    raise RuntimeError("boom in the middle of the body")


async def _return_early(scope: Scope, receive: Receive, send: Send) -> None:
    return


async def _return_partial(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": TEXT})
    await send({"type": "http.response.body", "body": b"half", "more_body": True})


async def _bad(scope: Scope, receive: Receive, send: Send) -> None:
    """``?what=``: one broken message; the server's error text is in the body of a 200 if
    send() raised (so the test can read it), else whatever the server made of it."""
    what = _query(scope)["what"]
    messages: dict[str, Message] = {
        "str-status": {"type": "http.response.start", "status": "200"},
        "str-headers": {"type": "http.response.start", "status": 200, "headers": [("a", "b")]},
        "body-first": {"type": "http.response.body", "body": b"x"},
        "no-type": {"status": 200},
        "crlf": {"type": "http.response.start", "status": 200, "headers": [(b"x", b"a\r\nb: c")]},
    }
    try:
        await send(messages[what])
        if what == "crlf":  # the core checks headers when the head is written
            await send({"type": "http.response.body", "body": b"x"})
    except (RuntimeError, TypeError, ValueError) as error:
        mark(_query(scope).get("token", ""), "error", f"{type(error).__name__}: {error}")
        raise


async def _double_start(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": TEXT})
    try:
        await send({"type": "http.response.start", "status": 200, "headers": TEXT})
    except RuntimeError as error:
        await send({"type": "http.response.body", "body": str(error).encode()})


async def _str_body(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": TEXT})
    try:
        await send({"type": "http.response.body", "body": "text"})
    except RuntimeError as error:
        await send({"type": "http.response.body", "body": str(error).encode()})


async def _after_complete(scope: Scope, receive: Receive, send: Send) -> None:
    await _reply(send, b"ok\n")
    try:
        await send({"type": "http.response.body", "body": b"more"})
    except RuntimeError as error:
        mark(_query(scope).get("token", ""), "error", str(error))


async def _returns_value(scope: Scope, receive: Receive, send: Send) -> int:
    await _reply(send, b"ok\n")
    return 42


ROUTES = {
    "/scope": _scope,
    "/body-messages": _body_messages,
    "/echo": _echo,
    "/wait-disconnect": _wait_disconnect,
    "/disconnect-after-response": _disconnect_after_response,
    "/sleep": _sleep,
    "/stream": _stream,
    "/no-receive": _no_receive,
    "/trailers": _trailers,
    "/pathsend": _pathsend,
    "/whoami": _whoami,
    "/app-framing": _app_framing,
    "/raise-before": _raise_before,
    "/raise-after": _raise_after,
    "/return-early": _return_early,
    "/return-partial": _return_partial,
    "/bad": _bad,
    "/double-start": _double_start,
    "/str-body": _str_body,
    "/after-complete": _after_complete,
    "/returns-value": _returns_value,  # type: ignore[dict-item]
}


# -- WebSocket ---------------------------------------------------------------------------------
async def _websocket(scope: Scope, receive: Receive, send: Send) -> None:
    path, query = scope["path"], _query(scope)
    token = query.get("token", "")
    message = await receive()
    assert message["type"] == "websocket.connect", message
    if path == "/ws/refuse":
        await send({"type": "websocket.close", "code": 1008})
        return
    if path == "/ws/deny":
        headers = [*TEXT, (b"x-denied", b"yes")]
        await send({"type": "websocket.http.response.start", "status": 401, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"entry\n"})
        return
    if path == "/ws/raise-before":
        raise RuntimeError("boom before accept")
    if path == "/ws/return-before":
        return
    if path == "/ws/scope":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(_jsonable(scope))})
        await receive()
        return
    subprotocols = scope.get("subprotocols", [])
    await send(
        {
            "type": "websocket.accept",
            "subprotocol": subprotocols[-1] if subprotocols else None,
            "headers": [(b"x-accepted", b"yes")],
        }
    )
    if path == "/ws/close":
        code = int(query.get("code", "1000"))
        await send({"type": "websocket.close", "code": code, "reason": query.get("reason", "")})
        message = await receive()
        mark(token, "disconnect", json.dumps(message))
        return
    if path == "/ws/deaf":  # accepts, then never receives until released
        mark(token, "entered")
        while not (probe_dir() / f"{token}.release").exists():
            await asyncio.sleep(0.05)
        return
    if path == "/ws/raise-after":
        raise RuntimeError("boom after accept")
    if path == "/ws/return-after":
        return
    # /ws/echo (and anything else): echo until the client leaves, then note how it left.
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            mark(token, "disconnect", json.dumps(message))
            try:
                await send({"type": "websocket.send", "text": "too late"})
            except OSError as error:
                mark(token, "send-raised", type(error).__name__)
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


# -- lifespan variants -------------------------------------------------------------------------
async def startup_fails(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "the database is on fire"})
        return
    await probe(scope, receive, send)


async def no_lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        raise ValueError("this app knows no lifespan (as the spec tells apps to say)")
    await probe(scope, receive, send)


async def slow_startup(scope: Scope, receive: Receive, send: Send) -> None:
    """Startup takes a second, and notes when it ended; shutdown notes when it began and
    how many connections the server still had open (none, if it waited for them)."""
    if scope["type"] != "lifespan":
        await probe(scope, receive, send)
        return
    token = os.environ.get("GATEWAYLAB_LIFESPAN_TOKEN", "")
    await receive()
    await asyncio.sleep(1.0)
    mark(token, "startup")
    await send({"type": "lifespan.startup.complete"})
    await receive()
    mark(token, "shutdown", str(_tcp_connections()))
    print("lifespan shutdown ran", file=sys.stderr, flush=True)
    await send({"type": "lifespan.shutdown.complete"})


def _tcp_connections() -> int:
    """How many TCP sockets this process holds that are not listening (/proc/net/tcp)."""
    inodes = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[3] != "0A":  # 0A: LISTEN
                    inodes.add(fields[9])
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            count += 1
    return count
