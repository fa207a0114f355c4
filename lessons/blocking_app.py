"""DELIBERATELY BROKEN: an ASGI app that blocks its event loop. Lesson 4's mistake, and its fixes.

An ASGI server runs every request as a task on **one** thread. A task gives the thread
back only at an ``await``; between two awaits it owns the loop, and no other connection is
read, answered or even accepted. So the one rule of the era is: never make a call that
waits without awaiting it. ``time.sleep``, ``requests.get``, a synchronous database driver,
``open().read()`` on a slow disk: each one, called from ``async def``, stops the whole
server for as long as it waits.

Three apps, identical except for the wait in ``/sleep`` (every other route, and the
lifespan, is the family's ``apps.asgi:app``)::

    python -m servers asgi --app lessons.blocking_app:app        # BUG: time.sleep
    python -m servers asgi --app lessons.blocking_app:fixed      # await asyncio.sleep
    python -m servers asgi --app lessons.blocking_app:offloaded  # await asyncio.to_thread

``app`` is the mistake, and it is an easy one to make: the code is correct, its answer is
correct, and one request at a time it is exactly as fast as the fixed one. Only under
concurrency does it show, as every other request waiting behind the sleeper. Lesson 4
(``make lesson-4``) makes that visible with the trace and a locust probe.

``fixed`` is the fix when an async version of the call exists (``asyncio.sleep``, httpx's
``AsyncClient``, asyncpg): the task waits, the loop serves everyone else.

``offloaded`` is the fix when it does not (a library you cannot change): the blocking call
runs on a thread of the loop's default executor, and the task awaits its result. That pool
is small (``min(32, CPUs + 4)`` threads), so it is a fix for an occasional call, not a way
to run a thread-per-request app on an event loop: past that many concurrent calls, they
queue exactly as in lesson 3's pool.
"""

from __future__ import annotations

import asyncio
import time

from apps import family
from apps.asgi import Receive, Scope, Send
from apps.asgi import app as family_app

__all__ = ["app", "fixed", "offloaded"]


def _sleep_ms(scope: Scope) -> int | None:
    """The ``ms`` of a ``GET /sleep`` request, or None for anything else (or a bad ``ms``:
    the family app then answers it, with its 400)."""
    if scope["type"] != "http" or scope["path"] != "/sleep":
        return None
    try:
        return family.int_param(scope["query_string"], family.SLEEP_MS)
    except family.ClientError:
        return None


async def _answer(send: Send, ms: int) -> None:
    reply = family.slept(ms)
    await send(
        {
            "type": "http.response.start",
            "status": reply.status,
            "headers": [
                (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers
            ],
        }
    )
    await send({"type": "http.response.body", "body": reply.body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The mistake: a blocking call inside ``async def``."""
    ms = _sleep_ms(scope)
    if ms is None:
        await family_app(scope, receive, send)
        return
    time.sleep(ms / 1000)  # BUG: holds the event loop, and with it every connection
    await _answer(send, ms)


async def fixed(scope: Scope, receive: Receive, send: Send) -> None:
    """The fix: the awaitable version of the same wait."""
    ms = _sleep_ms(scope)
    if ms is None:
        await family_app(scope, receive, send)
        return
    await asyncio.sleep(ms / 1000)  # the task waits; the loop serves the others
    await _answer(send, ms)


async def offloaded(scope: Scope, receive: Receive, send: Send) -> None:
    """The fix for a blocking call that has no async version: run it on a thread."""
    ms = _sleep_ms(scope)
    if ms is None:
        await family_app(scope, receive, send)
        return
    await asyncio.to_thread(time.sleep, ms / 1000)  # a worker thread blocks, not the loop
    await _answer(send, ms)
