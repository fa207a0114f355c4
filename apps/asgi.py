"""The family app as an ASGI 3.0 application: ``apps.asgi:app``.

Theory of operation
-------------------
ASGI turns WSGI's function call into a conversation. The server calls
``await app(scope, receive, send)`` once per HTTP request, once per WebSocket and once per
process lifetime: ``scope`` says which (``http``, ``websocket`` or ``lifespan``), and from
then on both sides exchange *messages*, plain dicts with a ``type``. Everything below follows
from that shape:

* **One task per request, blocking is forbidden.** Every request runs as a task on one
  event loop, so waiting must be ``await``: ``/sleep`` awaits a timer, and while it waits the
  loop serves everyone else. ``/cpu`` is the deliberate exception: its work runs on
  the loop, so while it counts *nothing else is served*. The course measures exactly that
  (a slow request's latency beside fast requests' throughput); wrapping it in
  ``asyncio.to_thread`` would blur the lesson, not fix it: the thread still needs the GIL.
* **The body is messages.** ``http.request`` messages arrive with ``body`` and
  ``more_body``; ``/upload`` hashes each one as it comes, so any size costs the same memory.
* **Streaming is messages too.** ``/stream`` sends ``http.response.body`` with
  ``more_body=True`` per line (``/events`` per server-sent event). Because ``receive()``
  keeps working while we answer, a background listener hears ``http.disconnect``, and the
  timer of ``/sleep`` or of the paced answer is cut short: a task can be told what a WSGI
  thread in ``time.sleep`` cannot.
* **WebSockets fit naturally.** ``/ws`` is the same loop of messages with
  ``websocket.receive`` and ``websocket.send``: this is what WSGI could not express.
  ``/chat`` goes one step further: a message from one connection is sent on all the others
  (the room is ``apps/chat.py``), so a task sends while another one receives.
* **Lifespan.** One ``lifespan`` scope per process says "starting" and "stopping"; we use
  startup to compile the page template, so that the first visitor does not pay for it.

Only the standard library is used on purpose: the dicts below *are* the interface, with no
framework in between. Every byte of every HTTP answer comes from :mod:`apps.family`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, MutableMapping
from contextlib import aclosing, suppress
from typing import Any

from apps import chat, family

__all__ = ["ASGIApp", "Message", "Receive", "Scope", "Send", "app"]

# The ASGI contract in four lines (after Starlette's types.py).
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

Reply = family.Response | family.Stream
Handler = Callable[[Scope, Receive], Awaitable[Reply | None]]  # None: the client has left


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI entry point: one call per HTTP request, WebSocket or process lifetime."""
    kind = scope["type"]
    if kind == "http":
        await _http(scope, receive, send)
    elif kind == "websocket":
        await _websocket(scope, receive, send)
    elif kind == "lifespan":
        await _lifespan(receive, send)
    else:
        # The ASGI spec: an app must raise on a scope type it does not know, so that the
        # server learns at once that this app cannot serve it.
        raise ValueError(f"apps.asgi serves http, websocket and lifespan scopes, not {kind!r}")


class _ClientGone(Exception):
    """``http.disconnect`` arrived while we were still reading or working: nobody to answer."""


# -- HTTP -----------------------------------------------------------------------------------
async def _http(scope: Scope, receive: Receive, send: Send) -> None:
    try:
        route = family.match(scope["path"], scope["method"])
        reply = await _HANDLERS[route.path](scope, receive)
    except family.ClientError as refusal:
        reply = refusal.response
    except _ClientGone:
        return
    if reply is None:
        return
    head_only = scope["method"] == "HEAD"  # RFC 9110 §9.3.2: GET's headers, no body
    await send(
        {
            "type": "http.response.start",
            "status": reply.status,
            # ASGI wants header names lower-cased, names and values as bytes.
            "headers": [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in reply.headers
            ],
        }
    )
    if isinstance(reply, family.Stream) and not head_only:
        await _send_paced(reply, receive, send)
        return
    body = b"" if head_only or isinstance(reply, family.Stream) else reply.body
    await send({"type": "http.response.body", "body": body})  # more_body defaults to False


async def _send_paced(stream: family.Stream, receive: Receive, send: Send) -> None:
    """Send each line as its own body message, pausing between them, until done or gone."""
    listener = _DisconnectListener(receive)
    try:
        for index, chunk in enumerate(stream.chunks):
            if index and not await listener.pause(stream.delay):
                return  # the client left: stop working for nobody
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        listener.stop()


class _DisconnectListener:
    """Waits for ``http.disconnect`` in a background task while the answer is being made.

    ``receive()`` after the request body blocks until the client disconnects (or the
    response is complete), so a task parked on it is an alarm that rings when the client
    leaves. ``pause`` sleeps on that alarm with a timeout: it returns True when the time is
    up, False when the alarm rang first.
    """

    def __init__(self, receive: Receive) -> None:
        self._task = asyncio.ensure_future(self._listen(receive))

    @staticmethod
    async def _listen(receive: Receive) -> None:
        # Any body still unread (a GET may carry one) is skipped on the way.
        while (await receive())["type"] != "http.disconnect":
            pass

    async def pause(self, seconds: float) -> bool:
        done, _ = await asyncio.wait({self._task}, timeout=seconds)
        if done:
            self._task.result()  # if receive() raised, the server broke: let it be seen
            return False
        return True

    def stop(self) -> None:
        # The task is parked in receive(), which waits on a queue or an event in every
        # server we know; cancelling such a wait takes no message away from anyone.
        self._task.cancel()


async def _body_pieces(receive: Receive) -> AsyncGenerator[bytes, None]:
    """The request body, one ``http.request`` message at a time, as the server delivers it.
    The server decides the piece size (and the flow control: it stops reading the socket
    while we do not ask for more)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header (names arrive lower-cased in ASGI)."""
    for key, value in scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


# -- route handlers -------------------------------------------------------------------------
async def _hello(scope: Scope, receive: Receive) -> Reply | None:
    return family.hello()


async def _echo(scope: Scope, receive: Receive) -> Reply | None:
    if scope["method"] != "POST":
        return family.echo_query(scope["query_string"])
    pieces: list[bytes] = []
    size = 0
    async with aclosing(_body_pieces(receive)) as body:
        async for piece in body:
            size += len(piece)
            if size > family.ECHO_LIMIT:  # counted as it arrives: Content-Length may be absent
                raise family.ClientError(family.content_too_large())
            pieces.append(piece)
    return family.echo_body(b"".join(pieces), _header(scope, b"content-type"))


async def _env(scope: Scope, receive: Receive) -> Reply | None:
    return family.env(scope)


async def _whoami(scope: Scope, receive: Receive) -> Reply | None:
    return family.whoami(scope.get("gatewaylab.era", "asgi"))


async def _sleep(scope: Scope, receive: Receive) -> Reply | None:
    ms = family.int_param(scope["query_string"], family.SLEEP_MS)
    listener = _DisconnectListener(receive)
    try:
        if not await listener.pause(ms / 1000):  # the loop serves others meanwhile
            return None
    finally:
        listener.stop()
    return family.slept(ms)


async def _cpu(scope: Scope, receive: Receive) -> Reply | None:
    # Deliberately on the loop: see the module docstring.
    return family.cpu(scope["query_string"])


async def _stream(scope: Scope, receive: Receive) -> Reply | None:
    return family.stream(scope["query_string"])


async def _events(scope: Scope, receive: Receive) -> Reply | None:
    return family.events(scope["query_string"])


async def _upload(scope: Scope, receive: Receive) -> Reply | None:
    digest = family.UploadDigest()
    async with aclosing(_body_pieces(receive)) as body:
        async for piece in body:
            digest.update(piece)
    return digest.response()


async def _page(scope: Scope, receive: Receive) -> Reply | None:
    return family.page()


async def _ws(scope: Scope, receive: Receive) -> Reply | None:
    # Reached only by plain HTTP: a WebSocket handshake arrives as a "websocket" scope.
    return family.upgrade_required()


async def _chat_page(scope: Scope, receive: Receive) -> Reply | None:
    # Plain HTTP gets the page; its script comes back on the same path as a WebSocket.
    return family.chat_page()


_HANDLERS: dict[str, Handler] = {
    "/hello": _hello,
    "/echo": _echo,
    "/env": _env,
    "/whoami": _whoami,
    "/sleep": _sleep,
    "/cpu": _cpu,
    "/stream": _stream,
    "/events": _events,
    "/upload": _upload,
    "/page": _page,
    "/ws": _ws,
    "/chat": _chat_page,
}


# -- WebSocket ------------------------------------------------------------------------------
async def _websocket(scope: Scope, receive: Receive, send: Send) -> None:
    """A WebSocket on /ws (the echo) or /chat (the room); anywhere else it is refused."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return  # the client left during the handshake
    if scope["path"] == "/ws":
        await _echo_socket(receive, send)
    elif scope["path"] == "/chat":
        await _chat_socket(receive, send)
    else:
        # Closing before accepting makes the server refuse the handshake with 403 (ASGI spec).
        await send({"type": "websocket.close", "code": 1008})


async def _echo_socket(receive: Receive, send: Send) -> None:
    """/ws: accept, then send back every message as it came (text as text, bytes as bytes)."""
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        # Exactly one of "text" and "bytes" is set (the other is absent or None).
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


# -- /chat ----------------------------------------------------------------------------------
# One room for the process: every connection on /chat joins it (see apps/chat.py).
ROOM = chat.Room()
# Close codes (RFC 6455 §7.4.1, and the IANA registry for 1013) and the reasons sent with
# them, which the chat page shows.
_UNSUPPORTED = (1003, "the chat takes text messages only")
_TOO_BIG = (1009, f"a message holds at most {family.CHAT_MESSAGE_BYTES} bytes of UTF-8")
_TOO_SLOW = (1008, f"too slow: {family.CHAT_BACKLOG} messages were waiting for you")
_FULL = (1013, f"the room is full ({family.CHAT_MEMBERS} members); try again later")


async def _chat_socket(receive: Receive, send: Send) -> None:
    """/chat: accept, join the room, then do two jobs at once until one of them ends it.

    * reading: each text message from this client is said to the room;
    * writing: the events in this member's outbox are sent to this client.

    They must be separate tasks: a member's socket may be slow to take what we send, and
    while one task waits for it, the other still hears the client (and the room still
    hears the others, since a broadcast only fills outboxes). The membership ends when the
    client leaves, breaks a rule (a message too big, or not text) or falls too far behind.
    """
    # Accept first, even when the room is full: a refused handshake is a bare 403 that a
    # browser does not show, while a close after accepting carries a reason the page shows.
    await send({"type": "websocket.accept"})
    member = ROOM.join()
    if member is None:
        await send({"type": "websocket.close", "code": _FULL[0], "reason": _FULL[1]})
        return
    reading = asyncio.ensure_future(_chat_read(receive, member))
    writing = asyncio.ensure_future(_chat_write(send, member))
    dropped = asyncio.ensure_future(member.dropped.wait())
    jobs = {reading, writing, dropped}
    try:
        await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ROOM.leave(member)  # the others hear it at once, whatever happens next here
        for job in jobs:
            job.cancel()  # a send waiting on a slow socket included: we close it below
        await asyncio.wait(jobs)
    if writing.done() and not writing.cancelled():
        writing.result()  # it ends only by an error: a closed socket returns, a bug raises
    close: tuple[int, str] | None = None  # None: the client has left, nobody to close
    if dropped.done() and not dropped.cancelled():
        close = _TOO_SLOW
    elif reading.done() and not reading.cancelled():
        close = reading.result()
    if close is not None:
        # A dropped member's client may be gone by now too (ASGI 2.4: send() raises an
        # OSError then); there is nobody left to tell, so that is the end of it.
        with suppress(OSError):
            await send({"type": "websocket.close", "code": close[0], "reason": close[1]})


async def _chat_read(receive: Receive, member: chat.Member) -> tuple[int, str] | None:
    """Say each text message to the room; return the close a broken rule calls for, or
    None when the client has left."""
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        if text is None:
            return _UNSUPPORTED
        # RFC 6455 §7.4.1: 1009, "a message that is too big for it to process".
        if len(text.encode()) > family.CHAT_MESSAGE_BYTES:
            return _TOO_BIG
        ROOM.say(member, text)


async def _chat_write(send: Send, member: chat.Member) -> None:
    """Send this member's events as they come, one at a time: each waits for the socket."""
    try:
        while True:
            event = await member.outbox.get()
            await send({"type": "websocket.send", "text": event})
    except OSError:
        return  # ASGI 2.4: send() on a closed connection raises an OSError; the client left


# -- lifespan -------------------------------------------------------------------------------
async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            family.render_page()  # compiles and caches the template once per process
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
