"""Drivers shared by the HTTP core tests: feed bytes in pieces, collect what came out.

Three tools, each used by more than one test module:

* :func:`drive` plays a well-behaved server loop around one :class:`ServerConnection`:
  it feeds the pieces it is given, collects every message the client sent (head, body
  and trailers folded into one :class:`Msg`), answers each complete message so that the
  next pipelined one may come out, and stops at the first protocol error. On the way it
  checks the invariants every server loop relies on (no empty Data, PAUSED between a
  complete request and its response, an error answered with a closing response).
* :func:`h11_parse_request` does the same with h11 as the server, for the differential.
* :func:`parse_response` reads a response back with h11 as the *client*: the proof that
  what the writers produce is well formed to a parser we did not write.

A body arrives as any number of Data events whose boundaries depend on how the bytes were
split; a Msg holds the concatenation, so that outcomes compare equal across splits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import h11

from servers.http import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Limits,
    LocalProtocolError,
    RemoteProtocolError,
    Request,
    ServerConnection,
    State,
)

Fields = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True)
class Msg:
    """One request as the server saw it. ``complete`` is False when no EndOfMessage came
    (the message failed or the input stopped in its body)."""

    method: bytes
    target: bytes
    version: bytes
    headers: Fields
    body: bytes = b""
    trailers: Fields = ()
    content_length: int | None = 0  # None: chunked
    keep_alive: bool = True
    expects_continue: bool = False
    complete: bool = True


@dataclass
class Outcome:
    """Everything a run produced: the messages, then an error status or a close (or neither,
    when the input simply ran out between or inside messages)."""

    messages: list[Msg] = field(default_factory=list)
    error: int | None = None
    closed: bool = False
    error_text: str = ""

    def summary(self) -> tuple[tuple[Msg, ...], int | None, bool]:
        return tuple(self.messages), self.error, self.closed


def pieces_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``data`` cut at the given offsets (sorted, duplicates and ends ignored)."""
    points = sorted({c for c in cuts if 0 < c < len(data)})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in pairwise(bounds) if b > a]


def one_byte_at_a_time(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def _msg_from(request: Request, body: bytes, trailers: Fields, complete: bool) -> Msg:
    return Msg(
        method=request.method,
        target=request.target,
        version=request.http_version,
        headers=tuple(request.headers),
        body=body,
        trailers=trailers,
        content_length=request.content_length,
        keep_alive=request.keep_alive,
        expects_continue=request.expects_continue,
        complete=complete,
    )


def check_error_response(conn: ServerConnection, exc: RemoteProtocolError) -> None:
    """The answer to a client's protocol error: its status, a close, the reason in the body."""
    # The connection knows it must close before the era has even answered.
    assert not conn.keep_alive and not conn.can_reuse
    raw = conn.error_response(exc)
    response, body, _ = parse_response(raw)
    assert response.status_code == exc.status
    assert (b"connection", b"close") in list(response.headers)
    assert exc.args[0].encode() in body, (exc.args[0], body)
    assert not conn.keep_alive
    assert not conn.can_reuse
    assert conn.our_state is State.MUST_CLOSE
    assert conn.their_state is State.ERROR
    # The core never reads past a protocol error: the bytes after it may be a smuggled
    # request, and the only safe thing left is to close.
    try:
        event = conn.next_event()
    except LocalProtocolError:
        return
    assert isinstance(event, ConnectionClosed), event


def drive(
    pieces: Sequence[bytes],
    eof: bool = False,
    limits: Limits | None = None,
    check_error: bool = True,
    eof_with_last: bool = False,
) -> Outcome:
    """Feed ``pieces`` (then EOF if ``eof``) to a fresh connection, acting as a server that
    answers every complete request with a small 200. Events are read after each piece;
    with ``eof_with_last`` the EOF arrives together with the last piece, before any read."""
    conn = ServerConnection(limits=limits)
    out = Outcome()
    current: Request | None = None
    body: list[bytes] = []

    def pump() -> bool:
        """Read events until more input is needed; False once the run is over."""
        nonlocal current, body
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                return True
            if isinstance(event, Request):
                assert current is None
                current, body = event, []
            elif isinstance(event, Data):
                assert current is not None
                assert event.data, "a Data event must never be empty"
                body.append(event.data)
            elif isinstance(event, EndOfMessage):
                assert current is not None
                msg = _msg_from(current, b"".join(body), tuple(event.trailers), True)
                out.messages.append(msg)
                current = None
                # House rule 1: nothing more from the client until we have answered.
                assert conn.next_event() is PAUSED
                conn.send_response(200, [(b"Content-Type", b"text/plain")], b"ok")
                if not conn.can_reuse:
                    # Only a client that asked to close gets here. Nothing more is read
                    # (the client's own close is all that may still be reported).
                    assert not msg.keep_alive
                    assert conn.our_state is State.MUST_CLOSE
                    assert conn.next_event() in (PAUSED, ConnectionClosed())
                    return False
                assert msg.keep_alive
                conn.start_next_cycle()
            elif isinstance(event, ConnectionClosed):
                out.closed = True
                return False
            else:  # pragma: no cover - a signal we did not expect here
                raise AssertionError(f"unexpected {event!r}")

    try:
        running = True
        for i, piece in enumerate(pieces):
            conn.receive_data(piece)
            if eof_with_last and i == len(pieces) - 1:
                conn.receive_data(b"")
                eof = False
            if not (running := pump()):
                break
        if running and eof:
            conn.receive_data(b"")
            pump()
    except RemoteProtocolError as exc:
        out.error, out.error_text = exc.status, str(exc)
        if current is not None:
            out.messages.append(_msg_from(current, b"".join(body), (), False))
        if check_error:
            check_error_response(conn, exc)
    return out


# ----------------------------------------------------------------------------------------
# h11 as the reference parser.
@dataclass
class H11Result:
    accepted: bool
    method: bytes = b""
    target: bytes = b""
    version: bytes = b""
    headers: Fields = ()
    body: bytes = b""
    trailers: Fields = ()
    waiting_for_100: bool = False
    error: str = ""


def h11_parse_request(pieces: Sequence[bytes]) -> H11Result | None:
    """One request through h11 as a server. None when the input ended before the message did."""
    conn = h11.Connection(h11.SERVER)
    result = H11Result(accepted=False)
    body: list[bytes] = []
    try:
        for piece in pieces:
            conn.receive_data(piece)
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    break
                if isinstance(event, h11.Request):
                    result.method, result.target = event.method, event.target
                    result.version = event.http_version
                    result.headers = tuple((bytes(n), bytes(v)) for n, v in event.headers)
                    result.waiting_for_100 = conn.they_are_waiting_for_100_continue
                elif isinstance(event, h11.Data):
                    body.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    result.accepted = True
                    result.body = b"".join(body)
                    result.trailers = tuple((bytes(n), bytes(v)) for n, v in event.headers)
                    return result
                else:  # pragma: no cover
                    raise AssertionError(f"unexpected h11 event {event!r}")
    except h11.RemoteProtocolError as exc:
        result.error = str(exc)
        return result
    return None


@dataclass
class OursResult:
    accepted: bool
    request: Request | None = None
    body: bytes = b""
    trailers: Fields = ()
    status: int | None = None
    error: str = ""


def ours_parse_request(pieces: Sequence[bytes]) -> OursResult | None:
    """One request through our core, the same way as :func:`h11_parse_request`."""
    conn = ServerConnection()
    result = OursResult(accepted=False)
    body: list[bytes] = []
    try:
        for piece in pieces:
            conn.receive_data(piece)
            while True:
                event = conn.next_event()
                if event is NEED_DATA:
                    break
                if isinstance(event, Request):
                    result.request = event
                elif isinstance(event, Data):
                    body.append(event.data)
                elif isinstance(event, EndOfMessage):
                    result.accepted = True
                    result.body = b"".join(body)
                    result.trailers = tuple(event.trailers)
                    return result
                else:  # pragma: no cover
                    raise AssertionError(f"unexpected event {event!r}")
    except RemoteProtocolError as exc:
        result.status, result.error = exc.status, str(exc)
        return result
    return None


# ----------------------------------------------------------------------------------------
def parse_response(
    raw: bytes, method: bytes = b"GET", eof: bool = True
) -> tuple[h11.Response, bytes, Fields]:
    """Read one final response with h11 as the client; returns it, its body and trailers.

    1xx responses before it are skipped. With ``eof`` the end of ``raw`` is also the end of
    the connection, which is how a close-delimited (HTTP/1.0 style) body ends. h11 raises
    if the bytes are not one well-formed HTTP/1.1 response, and so fails the test.
    """
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("Host", "example")]))
    client.send(h11.EndOfMessage())
    client.receive_data(raw)
    if eof:
        client.receive_data(b"")
    response: h11.Response | None = None
    body: list[bytes] = []
    while True:
        event = client.next_event()
        if isinstance(event, h11.InformationalResponse):
            continue
        if isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            body.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            assert response is not None
            trailers = tuple((bytes(n), bytes(v)) for n, v in event.headers)
            return response, b"".join(body), trailers
        else:
            raise AssertionError(f"incomplete or unexpected response: {event!r} after {raw!r}")


def parse_responses(raw: bytes, count: int) -> list[tuple[int, bytes]]:
    """Read ``count`` pipelined responses to GETs from ``raw`` with one h11 client:
    (status, body) each, in order. h11 fails the test on any framing error."""
    client = h11.Connection(h11.CLIENT)
    client.receive_data(raw)
    results = []
    for _ in range(count):
        client.send(h11.Request(method="GET", target="/", headers=[("Host", "example")]))
        client.send(h11.EndOfMessage())
        status, body = 0, b""
        while True:
            event = client.next_event()
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise AssertionError(f"incomplete or unexpected response: {event!r}")
        results.append((status, body))
        client.start_next_cycle()
    assert client.next_event() is h11.NEED_DATA  # nothing left over
    return results
