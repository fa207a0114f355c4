"""The connection state machine: persistence, pipelining, 100-continue, upgrades, closes.

The corpus proves the parsing; these tests walk a ServerConnection through the life of a
connection the way an era's server loop does, and check each state and flag on the way.
"""

from __future__ import annotations

import re

import pytest

from servers.http import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    EndOfMessage,
    InformationalResponse,
    LocalProtocolError,
    RemoteProtocolError,
    Request,
    Response,
    ServerConnection,
    State,
)

from .helpers import parse_response, parse_responses

GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


def open_request(raw: bytes) -> tuple[ServerConnection, Request]:
    """A new connection fed ``raw``, read up to its Request event."""
    conn = ServerConnection()
    conn.receive_data(raw)
    event = conn.next_event()
    assert isinstance(event, Request), event
    return conn, event


def read_to_end(conn: ServerConnection) -> bytes:
    """Read the rest of the current request's body; return it."""
    body = b""
    while True:
        event = conn.next_event()
        if isinstance(event, EndOfMessage):
            return body
        assert isinstance(event, Data), event
        body += event.data


def header_values(raw: bytes, name: bytes) -> list[bytes]:
    response, _, _ = parse_response(raw)
    return [value for key, value in response.headers if key == name]


# ----------------------------------------------------------------------------------------
# States, step by step
def test_states_through_one_exchange() -> None:
    conn = ServerConnection()
    assert (conn.their_state, conn.our_state) == (State.IDLE, State.IDLE)
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n")
    assert isinstance(conn.next_event(), Request)
    assert (conn.their_state, conn.our_state) == (State.SEND_BODY, State.SEND_RESPONSE)
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"hi")
    assert conn.next_event() == Data(b"hi")
    assert conn.next_event() == EndOfMessage()
    assert conn.their_state is State.DONE
    conn.send(Response(200, ((b"Content-Length", b"2"),)))
    assert conn.our_state is State.SEND_BODY
    conn.send(Data(b"ok"))
    conn.send(EndOfMessage())
    assert (conn.their_state, conn.our_state) == (State.DONE, State.DONE)
    assert conn.can_reuse
    conn.start_next_cycle()
    assert (conn.their_state, conn.our_state) == (State.IDLE, State.IDLE)
    assert conn.request is None


def test_illegal_send_names_event_role_and_state() -> None:
    conn = ServerConnection()
    with pytest.raises(LocalProtocolError, match=r"Response .* server .* IDLE"):
        conn.send(Response(200))
    conn = open_request(GET)[0]
    with pytest.raises(LocalProtocolError, match=r"Data .* server .* SEND_RESPONSE"):
        conn.send(Data(b"x"))
    assert conn.our_state is State.ERROR


def test_start_next_cycle_needs_both_sides_done() -> None:
    conn, _ = open_request(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n")
    expected = re.escape("client SEND_BODY and server SEND_RESPONSE")
    with pytest.raises(LocalProtocolError, match=expected):
        conn.start_next_cycle()
    conn.send(Response(200, ((b"Content-Length", b"0"),)))
    conn.send(EndOfMessage())
    # Our side is done, the client's body is not: still illegal.
    with pytest.raises(LocalProtocolError, match=re.escape("client SEND_BODY and server DONE")):
        conn.start_next_cycle()
    conn.receive_data(b"hi")
    read_to_end(conn)
    conn.start_next_cycle()  # now legal
    assert conn.their_state is State.IDLE


def test_start_next_cycle_illegal_while_responding() -> None:
    conn, _ = open_request(GET)
    assert conn.next_event() == EndOfMessage()
    conn.send(Response(200))
    with pytest.raises(LocalProtocolError, match=re.escape("client DONE and server SEND_BODY")):
        conn.start_next_cycle()


# ----------------------------------------------------------------------------------------
# Persistence (RFC 9112 §9.3)
@pytest.mark.parametrize(
    ("raw", "keep_alive", "connection"),
    [
        (GET, True, []),
        (b"GET / HTTP/1.0\r\n\r\n", False, [b"close"]),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", True, [b"keep-alive"]),
        (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", False, [b"close"]),
        (b"GET / HTTP/1.0\r\nConnection: close\r\n\r\n", False, [b"close"]),
    ],
    ids=["1.1 default", "1.0 default", "1.0 keep-alive", "1.1 close", "1.0 close"],
)
def test_keep_alive(raw: bytes, keep_alive: bool, connection: list[bytes]) -> None:
    conn, request = open_request(raw)
    assert request.keep_alive is keep_alive
    assert conn.next_event() == EndOfMessage()
    out = conn.send_response(200, body=b"hello")
    assert conn.keep_alive is keep_alive
    assert header_values(out, b"connection") == connection
    assert conn.can_reuse is keep_alive
    assert conn.our_state is (State.DONE if keep_alive else State.MUST_CLOSE)
    assert conn.their_state is (State.DONE if keep_alive else State.MUST_CLOSE)
    if not keep_alive:
        with pytest.raises(LocalProtocolError, match="MUST_CLOSE"):
            conn.start_next_cycle()


def test_app_connection_close_is_honoured() -> None:
    conn, _ = open_request(GET)
    conn.next_event()
    out = conn.send_response(200, [(b"Connection", b"close")], b"bye")
    # Sent once (the core owns the header), and the connection will not be reused.
    assert header_values(out, b"connection") == [b"close"]
    assert not conn.keep_alive and not conn.can_reuse
    assert conn.our_state is State.MUST_CLOSE


def test_app_connection_keep_alive_cannot_override_client_close() -> None:
    conn, _ = open_request(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    conn.next_event()
    out = conn.send_response(200, [(b"Connection", b"keep-alive")], b"x")
    assert header_values(out, b"connection") == [b"close"]
    assert not conn.can_reuse


def test_pipelined_requests_answered_in_order() -> None:
    conn = ServerConnection()
    conn.receive_data(b"".join(b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(3)))
    answered = []
    for i in range(3):
        request = conn.next_event()
        assert isinstance(request, Request) and request.target == b"/%d" % i
        assert conn.next_event() == EndOfMessage()
        # PAUSED until the response is complete, head and body.
        assert conn.next_event() is PAUSED
        answered.append(conn.send(Response(200)))
        assert conn.next_event() is PAUSED
        answered.append(conn.send(Data(b"%d" % i)))
        assert conn.next_event() is PAUSED
        answered.append(conn.send(EndOfMessage()))
        assert conn.next_event() is PAUSED  # and until the era starts the next cycle
        conn.start_next_cycle()
    assert conn.next_event() is NEED_DATA
    assert conn.buffered == 0
    # The responses, read back in order, carry the bodies in order.
    assert parse_responses(b"".join(answered), 3) == [(200, b"0"), (200, b"1"), (200, b"2")]


# ----------------------------------------------------------------------------------------
# Expect: 100-continue (RFC 9110 §10.1.1)
EXPECT = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"


def test_100_continue_then_body_keeps_the_connection() -> None:
    conn, request = open_request(EXPECT)
    assert request.expects_continue and conn.waiting_for_100_continue
    assert conn.next_event() is NEED_DATA
    assert conn.send(InformationalResponse(100)) == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert not conn.waiting_for_100_continue
    assert conn.our_state is State.SEND_RESPONSE  # a 1xx does not start the final response
    conn.receive_data(b"body")
    assert read_to_end(conn) == b"body"
    out = conn.send_response(200, body=b"ok")
    assert header_values(out, b"connection") == []
    assert conn.can_reuse


def test_client_sending_the_body_anyway_stops_the_wait() -> None:
    conn, _ = open_request(EXPECT + b"bo")
    assert conn.waiting_for_100_continue
    assert conn.next_event() == Data(b"bo")
    assert not conn.waiting_for_100_continue


def test_final_response_while_client_waits_for_100_closes() -> None:
    conn, _ = open_request(EXPECT)
    out = conn.send_response(413, body=b"too big")
    # The client may never send the body it announced: the connection cannot be trusted
    # for another request, so the response says so.
    assert header_values(out, b"connection") == [b"close"]
    assert not conn.keep_alive and not conn.waiting_for_100_continue
    conn.receive_data(b"body")
    assert read_to_end(conn) == b"body"
    assert not conn.can_reuse
    assert conn.their_state is State.MUST_CLOSE


def test_expect_ignored_for_http_10() -> None:
    conn, request = open_request(
        b"POST / HTTP/1.0\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\nx"
    )
    assert not request.expects_continue and not conn.waiting_for_100_continue
    # And the core refuses to send any 1xx to a 1.0 client (RFC 9110 §15.2).
    with pytest.raises(LocalProtocolError, match=r"HTTP/1\.0"):
        conn.send(InformationalResponse(100))


def test_expectation_we_cannot_meet_is_417() -> None:
    conn = ServerConnection()
    conn.receive_data(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx")
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.status == 417
    response, _, _ = parse_response(conn.error_response(info.value))
    assert response.status_code == 417


# ----------------------------------------------------------------------------------------
# 101 Switching Protocols (RFC 9110 §15.2.2)
UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)
FRAME = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"  # a masked "Hello" text frame


@pytest.mark.parametrize("eof", [False, True])
def test_upgrade_hands_over_the_trailing_bytes(eof: bool) -> None:
    conn, _ = open_request(UPGRADE + FRAME[:4])
    assert conn.next_event() == EndOfMessage()
    conn.receive_data(FRAME[4:])
    if eof:
        conn.receive_data(b"")
    head = conn.send(
        InformationalResponse(101, ((b"Upgrade", b"websocket"), (b"Connection", b"Upgrade")))
    )
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert conn.our_state is State.SWITCHED
    # The frame bytes are never parsed as HTTP.
    assert conn.next_event() is PAUSED
    assert conn.trailing_data() == (FRAME, eof)
    assert conn.buffered == 0 and conn.trailing_data() == (b"", eof)
    assert not conn.can_reuse


# ----------------------------------------------------------------------------------------
# Closing
def test_half_close_after_request_still_gets_the_response() -> None:
    conn, _ = open_request(GET)
    conn.receive_data(b"")  # the client shut down its writing side (shutdown(SHUT_WR))
    assert conn.next_event() == EndOfMessage()
    assert conn.next_event() is PAUSED  # our response is not out yet: no close reported
    out = conn.send_response(200, body=b"still here")
    assert parse_response(out)[1] == b"still here"
    assert conn.next_event() == ConnectionClosed()
    assert conn.their_state is State.CLOSED
    assert conn.next_event() == ConnectionClosed()  # and it stays closed
    assert not conn.can_reuse


def test_half_close_in_the_middle_of_the_response() -> None:
    conn, _ = open_request(GET)
    conn.next_event()
    conn.send(Response(200))
    conn.receive_data(b"")
    assert conn.next_event() is PAUSED
    conn.send(Data(b"x"))
    conn.send(EndOfMessage())
    assert conn.next_event() == ConnectionClosed()


def test_close_between_requests() -> None:
    conn, _ = open_request(GET)
    conn.next_event()
    conn.send_response(204)
    conn.start_next_cycle()
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed()
    assert conn.their_state is State.CLOSED


def test_eof_right_after_an_empty_line_is_a_close() -> None:
    # The empty line is dropped (RFC 9112 §2.2) and EOF is already known: no request can
    # come, so NEED_DATA here would leave an event-driven server waiting forever.
    conn = ServerConnection()
    conn.receive_data(b"\r\n")
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed()


def test_no_data_after_eof() -> None:
    conn = ServerConnection()
    conn.receive_data(b"")
    with pytest.raises(LocalProtocolError, match="after end of input"):
        conn.receive_data(b"GET")


def test_closed_in_the_body_is_an_error_answered_with_close() -> None:
    conn, _ = open_request(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nabc")
    assert conn.next_event() == Data(b"abc")
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="6 bytes") as info:
        conn.next_event()
    assert conn.their_state is State.ERROR
    response, body, _ = parse_response(conn.error_response(info.value))
    assert response.status_code == 400 and b"6 bytes of the body" in body
    with pytest.raises(LocalProtocolError):
        conn.next_event()


def test_error_after_response_started_sends_nothing() -> None:
    conn, _ = open_request(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n")
    conn.send(Response(200))
    conn.send(Data(b"partial"))
    conn.receive_data(b"ab")
    conn.receive_data(b"")
    assert conn.next_event() == Data(b"ab")
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_event()
    # Half a response is on the wire: there is nothing honest to add. The era closes.
    assert conn.error_response(info.value) == b""
    assert conn.our_state is State.MUST_CLOSE and not conn.keep_alive


def test_error_in_a_head_leaves_pipelined_bytes_unread() -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nX : 1\r\n\r\n" + GET)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert conn.buffered == len(GET)  # still there, and never parsed
    with pytest.raises(LocalProtocolError, match="after a protocol error"):
        conn.next_event()


# ----------------------------------------------------------------------------------------
# Draining a body after an early response
@pytest.mark.parametrize(
    "head_and_body",
    [
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n", b"0123456789"),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"4\r\n0123\r\n6\r\n456789\r\n0\r\n\r\n",
        ),
    ],
    ids=["content-length", "chunked"],
)
def test_drain_after_early_response_then_reuse(head_and_body: tuple[bytes, bytes]) -> None:
    head, body = head_and_body
    conn, _ = open_request(head)
    # The app answers at once (say, a 303 after looking at the head only).
    out = conn.send_response(303, [(b"Location", b"/elsewhere")])
    assert header_values(out, b"connection") == []  # nothing forces a close
    assert conn.response_complete and not conn.can_reuse  # the body is still coming
    assert conn.next_event() is NEED_DATA
    conn.receive_data(body + b"GET /second HTTP/1.1\r\nHost: a\r\n\r\n")
    assert read_to_end(conn) == b"0123456789"  # the server drains it...
    assert conn.can_reuse  # ...and the connection is clean for the next request
    conn.start_next_cycle()
    second = conn.next_event()
    assert isinstance(second, Request) and second.target == b"/second"


# ----------------------------------------------------------------------------------------
# Small facts the eras rely on
def test_request_path_and_query() -> None:
    _, request = open_request(b"GET /a/b%20c?x=1&y=2 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (request.path, request.query) == (b"/a/b%20c", b"x=1&y=2")
    _, request = open_request(b"GET http://h:8/p/q?z HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (request.path, request.query) == (b"/p/q", b"z")
    _, request = open_request(b"GET http://h?z HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (request.path, request.query) == (b"/", b"z")
    _, request = open_request(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (request.path, request.query) == (b"*", b"")


def test_request_is_immutable() -> None:
    # A NamedTuple, not a frozen dataclass (events.py says why): immutable all the same.
    _, request = open_request(GET)
    with pytest.raises(AttributeError):
        request.method = b"POST"  # type: ignore[misc]
    assert request == open_request(GET)[1] and hash(request) == hash(open_request(GET)[1])
    assert repr(request).startswith("Request(method=b'GET', target=b'/', http_version=b'1.1'")


def test_framing_facts_on_the_request() -> None:
    _, request = open_request(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert (request.chunked, request.content_length, request.has_body) == (True, None, True)
    _, request = open_request(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
    assert (request.chunked, request.content_length, request.has_body) == (False, 0, False)
    _, request = open_request(GET)
    assert (request.chunked, request.content_length, request.has_body) == (False, 0, False)
    assert request.headers.get(b"host") == b"a" and request.headers.get(b"x") is None
    assert request.headers.get_all(b"host") == [b"a"]
