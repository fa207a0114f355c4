"""Response writing: the head the core builds, the framing it chooses, what it refuses.

Every response produced here is read back with h11 as a client (``parse_response``): a
response that is exact to our eyes but malformed to a reference parser would fail there.
"""

from __future__ import annotations

import re
import time
from email.utils import parsedate_to_datetime

import pytest

from servers.http import (
    SERVER_SOFTWARE,
    Data,
    EndOfMessage,
    Headers,
    InformationalResponse,
    LocalProtocolError,
    Request,
    Response,
    ServerConnection,
    State,
    http_date,
)

from .helpers import parse_response

GET_11 = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
GET_10 = b"GET / HTTP/1.0\r\n\r\n"
GET_10_KEEP = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
HEAD_11 = b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"

# RFC 9110 §5.6.7: IMF-fixdate = day-name "," SP date1 SP time-of-day SP GMT
IMF_FIXDATE = re.compile(
    rb"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
)


def ready(raw: bytes = GET_11, server: bytes = SERVER_SOFTWARE) -> ServerConnection:
    """A connection that has read one whole request and owes its response."""
    conn = ServerConnection(server=server)
    conn.receive_data(raw)
    assert isinstance(conn.next_event(), Request)
    assert isinstance(conn.next_event(), EndOfMessage)
    return conn


def respond(conn: ServerConnection, status: int, headers: tuple[tuple[bytes, bytes], ...] = (),
            chunks: tuple[bytes, ...] = (), trailers: tuple[tuple[bytes, bytes], ...] = ()
            ) -> bytes:
    out = [conn.send(Response(status, headers))]
    out += [conn.send(Data(chunk)) for chunk in chunks]
    out.append(conn.send(EndOfMessage(Headers(trailers))))
    return b"".join(out)


def head_of(raw: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The status line and the header lines exactly as sent (names in their sent case)."""
    head, _, _ = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    fields = []
    for line in lines:
        name, _, value = line.partition(b": ")
        fields.append((name, value))
    return status_line, fields


def names(raw: bytes) -> list[bytes]:
    return [name.lower() for name, _ in head_of(raw)[1]]


# ----------------------------------------------------------------------------------------
# The head
@pytest.mark.parametrize(
    ("status", "reason", "line"),
    [
        (200, b"", b"HTTP/1.1 200 OK"),
        (404, b"", b"HTTP/1.1 404 Not Found"),
        (200, b"Fine Thanks", b"HTTP/1.1 200 Fine Thanks"),
        (599, b"", b"HTTP/1.1 599 "),  # RFC 9112 §4: the reason may be empty, the SP stays
        (999, b"", b"HTTP/1.1 999 "),
    ],
)
def test_status_line(status: int, reason: bytes, line: bytes) -> None:
    conn = ready()
    raw = conn.send(Response(status, ((b"Content-Length", b"0"),), reason))
    raw += conn.send(EndOfMessage())
    assert head_of(raw)[0] == line
    assert parse_response(raw)[0].status_code == status


def test_date_and_server_added() -> None:
    conn = ready()
    raw = conn.send_response(200, body=b"x")
    fields = dict((n.lower(), v) for n, v in head_of(raw)[1])
    assert IMF_FIXDATE.fullmatch(fields[b"date"]), fields[b"date"]
    sent = parsedate_to_datetime(fields[b"date"].decode()).timestamp()
    assert abs(sent - time.time()) < 3
    assert fields[b"server"] == SERVER_SOFTWARE
    assert IMF_FIXDATE.fullmatch(http_date())


def test_date_and_server_from_the_app_are_kept_once() -> None:
    conn = ready(server=b"custom/9")
    raw = conn.send_response(
        200, [(b"Date", b"Sun, 06 Nov 1994 08:49:37 GMT"), (b"Server", b"app/1")], b"x"
    )
    assert names(raw).count(b"date") == 1 and names(raw).count(b"server") == 1
    fields = dict(head_of(raw)[1])
    assert fields[b"Date"] == b"Sun, 06 Nov 1994 08:49:37 GMT"
    assert fields[b"Server"] == b"app/1"


def test_server_name_is_configurable() -> None:
    raw = ready(server=b"custom/9").send_response(200)
    assert (b"Server", b"custom/9") in head_of(raw)[1]


def test_app_headers_kept_in_order_and_case() -> None:
    raw = ready().send_response(200, [(b"X-B", b"2"), (b"x-a", b"1"), (b"X-B", b"3")], b"")
    fields = head_of(raw)[1]
    assert [f for f in fields if f[0] in (b"X-B", b"x-a")] == [
        (b"X-B", b"2"), (b"x-a", b"1"), (b"X-B", b"3"),
    ]


# ----------------------------------------------------------------------------------------
# Framing (RFC 9112 §6)
def test_content_length_honoured() -> None:
    conn = ready()
    raw = respond(conn, 200, ((b"Content-Length", b"11"),), (b"hello", b" ", b"world"))
    assert raw.endswith(b"\r\n\r\nhello world")
    assert names(raw).count(b"content-length") == 1 and b"transfer-encoding" not in names(raw)
    assert parse_response(raw)[1] == b"hello world"
    assert conn.can_reuse


def test_identical_content_lengths_sent_once() -> None:
    raw = respond(ready(), 200, ((b"Content-Length", b"2"), (b"content-length", b"2")), (b"hi",))
    assert names(raw).count(b"content-length") == 1
    assert parse_response(raw)[1] == b"hi"


def test_chunked_when_no_length_on_http_11() -> None:
    conn = ready()
    big = bytes(range(256)) * 2
    raw = respond(conn, 200, (), (b"hello", b"", b"world!", big))
    body = raw.partition(b"\r\n\r\n")[2]
    assert (b"Transfer-Encoding", b"chunked") in head_of(raw)[1]
    assert b"content-length" not in names(raw)
    # An empty Data must not turn into a last-chunk that ends the body early; sizes are hex.
    assert body == b"5\r\nhello\r\n6\r\nworld!\r\n200\r\n" + big + b"\r\n0\r\n\r\n"
    assert parse_response(raw)[1] == b"helloworld!" + big
    assert conn.can_reuse


def test_trailers_with_chunked() -> None:
    raw = respond(ready(), 200, ((b"Trailer", b"X-Sum"),), (b"data",), ((b"X-Sum", b"abc"),))
    assert raw.endswith(b"4\r\ndata\r\n0\r\nX-Sum: abc\r\n\r\n")
    _, body, trailers = parse_response(raw)
    assert (body, trailers) == (b"data", ((b"x-sum", b"abc"),))


@pytest.mark.parametrize("request_head", [GET_10, GET_10_KEEP], ids=["1.0", "1.0 keep-alive"])
@pytest.mark.parametrize("status", [200, 404, 500])
def test_http_10_without_length_is_close_delimited(request_head: bytes, status: int) -> None:
    conn = ready(request_head)
    raw = respond(conn, status, ((b"Content-Type", b"text/plain"),), (b"abc", b"def"))
    # Never Transfer-Encoding to a 1.0 client (RFC 9112 §6.1): the close ends the body.
    assert b"transfer-encoding" not in raw.lower()
    assert b"content-length" not in names(raw)
    assert (b"Connection", b"close") in head_of(raw)[1]
    assert raw.endswith(b"\r\n\r\nabcdef")
    assert parse_response(raw, eof=True)[1] == b"abcdef"
    assert not conn.keep_alive and conn.our_state is State.MUST_CLOSE


def test_http_10_keep_alive_with_length() -> None:
    conn = ready(GET_10_KEEP)
    raw = conn.send_response(200, body=b"abc")
    assert (b"Connection", b"keep-alive") in head_of(raw)[1]
    assert b"transfer-encoding" not in raw.lower()
    assert parse_response(raw, eof=False)[1] == b"abc"
    assert conn.can_reuse


def test_trailers_refused_without_chunked() -> None:
    with pytest.raises(LocalProtocolError, match="chunked"):
        respond(ready(GET_10), 200, (), (b"x",), ((b"X-Sum", b"1"),))
    with pytest.raises(LocalProtocolError, match="chunked"):
        respond(ready(), 200, ((b"Content-Length", b"1"),), (b"x",), ((b"X-Sum", b"1"),))


@pytest.mark.parametrize("with_length", [True, False])
def test_head_has_no_body_but_keeps_headers(with_length: bool) -> None:
    conn = ready(HEAD_11)
    headers = ((b"Content-Length", b"1234"),) if with_length else ()
    raw = respond(conn, 200, ((b"Content-Type", b"text/html"), *headers), (b"ignored body",))
    assert raw.endswith(b"\r\n\r\n") and b"ignored" not in raw
    assert (b"Content-Type", b"text/html") in head_of(raw)[1]
    # The app's Content-Length is what a GET would have had (RFC 9110 §9.3.2): kept.
    assert ((b"Content-Length", b"1234") in head_of(raw)[1]) is with_length
    assert b"transfer-encoding" not in raw.lower()
    assert parse_response(raw, method=b"HEAD", eof=False)[1] == b""
    assert conn.can_reuse


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_have_no_body_and_no_length(status: int) -> None:
    conn = ready()
    raw = respond(conn, status, ((b"ETag", b'"v1"'), (b"Content-Length", b"5")), (b"hello",))
    assert raw.endswith(b"\r\n\r\n") and b"hello" not in raw
    assert b"content-length" not in names(raw)
    assert b"transfer-encoding" not in raw.lower()
    assert (b"ETag", b'"v1"') in head_of(raw)[1]
    response, body, _ = parse_response(raw, eof=False)
    assert (response.status_code, body) == (status, b"")
    assert conn.can_reuse


def test_informational_responses() -> None:
    conn = ServerConnection()
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n")
    conn.next_event()
    early = conn.send(InformationalResponse(103, ((b"Link", b"</s.css>; rel=preload"),)))
    assert early == b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
    raw = early + conn.send_response(200, body=b"ok")
    response, body, _ = parse_response(raw)
    assert (response.status_code, body) == (200, b"ok")


# ----------------------------------------------------------------------------------------
# Refusals: what the app may not send (response splitting, framing lies, wrong types)
SPLITTING = [
    (b"X-Ok", b"a\r\nSet-Cookie: evil=1"),
    (b"X-Ok", b"a\r\n\r\n<html>injected"),
    (b"X-Ok", b"a\nb"),
    (b"X-Ok", b"a\rb"),
    (b"X-Ok", b"a\x00b"),
    (b"X-Ok", b"\x1b[31mred"),
    (b"X-Ok", b"a\x7f"),
    (b"X-Ok", b"a\x0bb"),
    (b"X-Ok\r\nSet-Cookie", b"evil=1"),
    (b"X-Ok\n", b"1"),
    (b"X-Ok\r", b"1"),
    (b"X\x00Ok", b"1"),
    (b"X-Ok:", b"1"),
    (b"X Ok", b"1"),
    (b"", b"1"),
    (b"N\xc3\xa4me", b"1"),
]


@pytest.mark.parametrize(("name", "value"), SPLITTING)
def test_splitting_refused_in_response_headers(name: bytes, value: bytes) -> None:
    conn = ready()
    with pytest.raises(LocalProtocolError, match="illegal header"):
        conn.send(Response(200, ((name, value),)))
    # Nothing reached the wire; the connection will close after whatever the era sends.
    assert not conn.keep_alive and not conn.can_reuse


@pytest.mark.parametrize(("name", "value"), SPLITTING)
def test_splitting_refused_in_informational_headers(name: bytes, value: bytes) -> None:
    conn = ready()
    with pytest.raises(LocalProtocolError, match="illegal header"):
        conn.send(InformationalResponse(103, ((name, value),)))
    assert conn.our_state is State.ERROR


@pytest.mark.parametrize(("name", "value"), SPLITTING)
def test_splitting_refused_in_trailers(name: bytes, value: bytes) -> None:
    conn = ready()
    conn.send(Response(200))
    conn.send(Data(b"x"))
    with pytest.raises(LocalProtocolError, match="illegal header"):
        conn.send(EndOfMessage(Headers([(name, value)])))
    assert conn.our_state is State.ERROR and not conn.can_reuse


@pytest.mark.parametrize("reason", [b"OK\r\nX: 1", b"OK\n", b"O\x00K", "OK"])
def test_bad_reason_phrase_refused(reason: bytes) -> None:
    with pytest.raises(LocalProtocolError, match="reason phrase"):
        ready().send(Response(200, (), reason))


@pytest.mark.parametrize("name", [b"Transfer-Encoding", b"transfer-encoding", b"TRANSFER-ENCODING"])
@pytest.mark.parametrize("value", [b"chunked", b"identity", b"gzip, chunked"])
def test_app_transfer_encoding_refused(name: bytes, value: bytes) -> None:
    conn = ready()
    with pytest.raises(LocalProtocolError, match="transfer coding"):
        conn.send(Response(200, ((name, value),)))
    assert not conn.keep_alive


@pytest.mark.parametrize("name", [b"Transfer-Encoding", b"TRANSFER-ENCODING"])
def test_app_transfer_encoding_dropped_when_asked(name: bytes) -> None:
    # ASGI's rule ("Response Start"): the server ignores the app's Transfer-Encoding and
    # frames the body itself, by the app's Content-Length here, chunked without one.
    conn = ServerConnection(drop_transfer_encoding=True)
    conn.receive_data(GET_11 * 2)
    assert isinstance(conn.next_event(), Request) and conn.next_event() == EndOfMessage()
    raw = conn.send_response(200, [(name, b"chunked"), (b"Content-Length", b"2")], b"hi")
    assert b"transfer-encoding" not in names(raw) and raw.endswith(b"\r\n\r\nhi")
    assert (b"Content-Length", b"2") in head_of(raw)[1] and conn.keep_alive
    conn.start_next_cycle()
    assert isinstance(conn.next_event(), Request) and conn.next_event() == EndOfMessage()
    raw = conn.send(Response(200, ((name, b"gzip"),)))
    assert names(raw).count(b"transfer-encoding") == 1
    assert (b"Transfer-Encoding", b"chunked") in head_of(raw)[1]


@pytest.mark.parametrize("value", [b"+5", b"0x5", b"-1", b"", b"five", b"5, 5", b"1" * 19])
def test_bad_content_length_refused(value: bytes) -> None:
    with pytest.raises(LocalProtocolError, match="Content-Length"):
        ready().send(Response(200, ((b"Content-Length", value),)))


def test_conflicting_content_lengths_refused() -> None:
    with pytest.raises(LocalProtocolError, match="two different Content-Length"):
        ready().send(Response(200, ((b"Content-Length", b"5"), (b"Content-Length", b"6"))))


def test_too_much_body_refused() -> None:
    conn = ready()
    conn.send(Response(200, ((b"Content-Length", b"5"),)))
    conn.send(Data(b"hel"))
    with pytest.raises(LocalProtocolError, match="more body than its Content-Length"):
        conn.send(Data(b"lo!"))
    assert conn.our_state is State.ERROR and not conn.can_reuse and not conn.keep_alive


def test_too_little_body_refused() -> None:
    conn = ready()
    conn.send(Response(200, ((b"Content-Length", b"5"),)))
    conn.send(Data(b"hel"))
    with pytest.raises(LocalProtocolError, match="2 bytes short"):
        conn.send(EndOfMessage())
    assert conn.our_state is State.ERROR and not conn.can_reuse


@pytest.mark.parametrize(
    "event",
    [
        Response(200, (("X-Str", b"1"),)),  # type: ignore[arg-type]
        Response(200, ((b"X-Str", "1"),)),  # type: ignore[arg-type]
        Response(200, (), "OK"),  # type: ignore[arg-type]
        Response("200"),  # type: ignore[arg-type]
        InformationalResponse("100"),  # type: ignore[arg-type]
    ],
    ids=["str name", "str value", "str reason", "str status", "str 1xx status"],
)
def test_str_instead_of_bytes_refused_in_heads(event: Response | InformationalResponse) -> None:
    with pytest.raises(LocalProtocolError):
        ready().send(event)


@pytest.mark.parametrize("length", [(b"Content-Length", b"5"),  None])
def test_str_body_refused(length: tuple[bytes, bytes] | None) -> None:
    conn = ready()
    conn.send(Response(200, (length,) if length else ()))
    with pytest.raises(LocalProtocolError, match="bytes"):
        conn.send(Data("hello"))  # type: ignore[arg-type]
    assert conn.our_state is State.ERROR


def test_str_trailer_refused() -> None:
    conn = ready()
    conn.send(Response(200))
    with pytest.raises(LocalProtocolError, match="bytes"):
        conn.send(EndOfMessage(Headers([(b"X-Sum", "1")])))  # type: ignore[list-item]


@pytest.mark.parametrize("status", [0, 99, 100, 101, 199, 1000, -200, True])
def test_final_status_range(status: int) -> None:
    with pytest.raises(LocalProtocolError, match="final status"):
        ready().send(Response(status))


@pytest.mark.parametrize("status", [99, 200, 204, 0, 1000])
def test_informational_status_range(status: int) -> None:
    with pytest.raises(LocalProtocolError, match="InformationalResponse"):
        ready().send(InformationalResponse(status))


@pytest.mark.parametrize("status", [200, 299, 599, 999])
def test_final_status_accepted(status: int) -> None:
    raw = respond(ready(), status, ((b"Content-Length", b"0"),))
    assert parse_response(raw)[0].status_code == status


# ----------------------------------------------------------------------------------------
# After a refusal
def test_refused_head_leaves_room_for_a_500() -> None:
    """The head was refused before any byte was produced, so the era can still answer 500,
    and that answer closes the connection."""
    conn = ready()
    with pytest.raises(LocalProtocolError):
        conn.send(Response(200, ((b"X", b"a\r\nb"),)))
    assert conn.our_state is State.SEND_RESPONSE and not conn.keep_alive
    raw = conn.send_response(500, [(b"Content-Type", b"text/plain")], b"Internal Server Error\n")
    response, body, _ = parse_response(raw)
    assert body == b"Internal Server Error\n"
    assert response.status_code == 500 and (b"connection", b"close") in list(response.headers)
    assert conn.our_state is State.MUST_CLOSE and not conn.can_reuse


def test_refusal_after_the_head_is_an_error_state() -> None:
    conn = ready()
    conn.send(Response(200, ((b"Content-Length", b"1"),)))
    with pytest.raises(LocalProtocolError):
        conn.send(Data(b"too long"))
    assert conn.our_state is State.ERROR and not conn.can_reuse
    # Nothing more can be sent on this connection.
    with pytest.raises(LocalProtocolError, match="ERROR"):
        conn.send(EndOfMessage())
    with pytest.raises(LocalProtocolError, match="ERROR"):
        conn.start_next_cycle()
