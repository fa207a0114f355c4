"""The ASGI 3.0 contract in one short file (after Starlette's types.py), and its two errors.

An ASGI application is ``async def app(scope, receive, send)``. The scope is a dict that
says what the connection is; ``receive()`` waits for the next message from the server and
``send(message)`` hands one to it. Messages are plain dicts with a ``"type"``. The server
checks what the app sends and raises at once, in the app's own ``await send(...)``, when a
message breaks the contract: :class:`ContractError` says what was expected and what came
(STYLE rule 9). When the client has gone, ``send()`` raises :class:`ClientDisconnected`,
an ``OSError`` as spec 2.4 asks, so an app may treat it like any socket error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# What the server calls: an app that breaks the contract may return a value, and is told.
AnyApp = Callable[[Scope, Receive, Send], Awaitable[object]]

# asgi.spec_version per scope type ("HTTP & WebSocket ASGI Message Format", "Lifespan"):
# 2.4 is the version in which send() on a closed connection raises (we do), and 2.5
# the one that added "reason" to websocket.disconnect (we send it).
HTTP_SPEC = "2.4"
WEBSOCKET_SPEC = "2.5"
LIFESPAN_SPEC = "2.0"


class ContractError(RuntimeError):
    """The application broke the ASGI contract; the message names expected and got."""


class ClientDisconnected(OSError):
    """``send()`` after the client went away ("Disconnected Client", spec 2.4)."""


def type_name(value: object) -> str:
    """How an error message shows a wrong value: its type, and the value if it is short."""
    shown = repr(value)
    return type(value).__name__ + (f" {shown}" if len(shown) <= 40 else "")


def invalid(where: str, expected: str, value: object) -> ContractError:
    """The error for a field of the wrong type: where it is, what was expected, what came."""
    return ContractError(f"{where}: expected {expected}, got {type_name(value)}")


def describe(message: Message) -> str:
    """A message (or scope) as --trace prints it: every field, bodies as ``<N bytes>``."""
    parts = []
    for key, value in message.items():
        if key in ("body", "bytes") and isinstance(value, bytes | bytearray):
            parts.append(f"{key}=<{len(value)} bytes>")
        elif isinstance(value, str) and len(value) > 64:
            parts.append(f"{key}=<{len(value)} characters>")
        else:
            parts.append(f"{key}={value!r}")
    return " ".join(parts)


_NOT_PAIRS = (str, bytes, dict)  # iterable, but not of [name, value] pairs


def checked_headers(value: object, where: str) -> list[tuple[bytes, bytes]]:
    """ASGI headers: an iterable of [name, value] pairs of bytes ("Response Start")."""
    # A list is the usual value and never one of the three: one type() check spares the
    # isinstance() of the rest (which costs more than checking two headers).
    if type(value) is not list and isinstance(value, _NOT_PAIRS):
        raise invalid(where, "a list of [name, value] pairs", value)
    headers = []
    try:
        for pair in value:  # type: ignore[attr-defined]
            name, content = pair
            if type(name) is not bytes or type(content) is not bytes:
                raise ContractError(
                    f"{where}: expected header names and values as bytes, got {pair!r}"
                )
            # A tuple is immutable and already the pair we need; a list is copied, since
            # the app could still change it.
            headers.append(pair if type(pair) is tuple else (name, content))
    except (TypeError, ValueError):
        raise invalid(where, "[name, value] pairs of bytes", value) from None
    return headers
