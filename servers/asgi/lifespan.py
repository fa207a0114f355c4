"""The lifespan protocol (ASGI "Lifespan Protocol" 2.0): startup before the first connection,
shutdown after the last.

The app is called once with a ``lifespan`` scope, in a task of its own that lives as long
as the server. It hears ``lifespan.startup`` before the server listens, and answers
``lifespan.startup.complete`` (a database pool is open, a template compiled) or
``lifespan.startup.failed`` (the server logs the message and exits non-zero). At the end,
after the last connection has closed, it hears ``lifespan.shutdown`` and answers
``...complete`` or ``...failed``.

Lifespan is optional for apps. The spec tells an app to *raise* on a scope type it does
not know, so in ``--lifespan auto`` (the default) an app that raises before answering
startup, or returns without answering, simply does not do lifespan: the server says so
in one line and serves anyway. ``--lifespan on`` makes that a failure, ``off`` never
calls the app with this scope.

``scope["state"]`` is a dict the app may fill during startup; every HTTP and WebSocket
scope then gets a *shallow copy* of it ("Lifespan State"): the same objects, but a key
an app sets for one request does not leak into the next.
"""

from __future__ import annotations

import asyncio
import enum
import sys
import traceback
from typing import Any

from .types import LIFESPAN_SPEC, AnyApp, ContractError, Message

__all__ = ["Lifespan", "Phase"]


class Phase(enum.Enum):
    STARTING = "STARTING"  # lifespan.startup sent, waiting for the answer
    STARTED = "STARTED"
    STOPPING = "STOPPING"  # lifespan.shutdown sent
    STOPPED = "STOPPED"
    FAILED = "FAILED"  # the app said startup or shutdown failed
    UNSUPPORTED = "UNSUPPORTED"  # the app raised or returned before answering startup

    def __repr__(self) -> str:
        return self.name


# (phase, message from the app) -> phase.
TRANSITIONS: dict[tuple[Phase, str], Phase] = {
    (Phase.STARTING, "lifespan.startup.complete"): Phase.STARTED,
    (Phase.STARTING, "lifespan.startup.failed"): Phase.FAILED,
    (Phase.STOPPING, "lifespan.shutdown.complete"): Phase.STOPPED,
    (Phase.STOPPING, "lifespan.shutdown.failed"): Phase.FAILED,
}


class Lifespan:
    def __init__(self, app: AnyApp, mode: str, state: dict[str, Any]) -> None:
        self.app = app
        self.mode = mode  # "auto", "on" or "off"
        self.state = state
        self.phase = Phase.STARTING
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._answered = asyncio.Event()  # the app answered the last event, or ended
        self._task: asyncio.Task[None] | None = None
        self._why = "it returned without answering lifespan.startup"

    async def startup(self) -> bool:
        """Run startup; False if the server must not start (failed, or unsupported with on)."""
        if self.mode == "off":
            self.phase = Phase.UNSUPPORTED
            return True
        self._task = asyncio.get_running_loop().create_task(self._run(), name="lifespan")
        await self._event({"type": "lifespan.startup"})
        if self.phase is Phase.UNSUPPORTED:
            if self.mode == "on":
                print("asgi: lifespan is on, and the app does not support it", file=sys.stderr)
                return False
            print(f"asgi: no lifespan ({self._why}); serving without it", file=sys.stderr)
            return True
        return self.phase is Phase.STARTED

    async def shutdown(self) -> bool:
        """Run shutdown, if startup happened; False if the app said it failed."""
        if self.phase is not Phase.STARTED or self._task is None or self._task.done():
            return self.phase is not Phase.FAILED
        self.phase = Phase.STOPPING
        await self._event({"type": "lifespan.shutdown"})
        return self.phase is Phase.STOPPED

    async def _event(self, message: Message) -> None:
        self._answered.clear()
        await self._inbox.put(message)
        await self._answered.wait()

    async def _run(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": LIFESPAN_SPEC},
            "state": self.state,
        }
        try:
            await self.app(scope, self._inbox.get, self._send)
            if self.phase is Phase.STARTING:
                self.phase = Phase.UNSUPPORTED  # returned without a word: no lifespan
        except Exception as error:
            if self.phase is Phase.STARTING and self.mode == "auto":
                self.phase = Phase.UNSUPPORTED  # the spec's way to say "not for me"
                self._why = f"the app raised {type(error).__name__}: {error}"
            else:
                print("asgi: the lifespan task failed:", file=sys.stderr)
                traceback.print_exception(error, file=sys.stderr)
                self.phase = Phase.FAILED
        finally:
            self._answered.set()  # nobody must wait for an answer that cannot come

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        try:
            self.phase = TRANSITIONS[self.phase, str(kind)]
        except KeyError:
            expected = " or ".join(repr(k) for (p, k) in TRANSITIONS if p is self.phase)
            raise ContractError(f"expected {expected or 'nothing'}, got {kind!r}") from None
        if self.phase is Phase.FAILED:
            print(f"asgi: {kind}: {message.get('message', '')}", file=sys.stderr)
        self._answered.set()
