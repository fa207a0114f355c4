"""Both ends of a connection (servers/fastcgi/protocol.py), without sockets.

The application's end is fed whole requests one byte at a time and must produce the same
events as when fed at once; the management records and refusals it answers by itself are
decoded and checked field by field. The web server's end is checked for the request ids
it accepts. Finally, the two ends talk to each other through a byte-at-a-time pipe.
"""

from __future__ import annotations

import pytest

from servers.fastcgi.protocol import (
    AbortRequested,
    ApplicationConnection,
    ConnectionEnded,
    ExchangeState,
    RequestReady,
    StdinData,
    StdinEnded,
    WebServerConnection,
)
from servers.fastcgi.records import (
    FCGI_MAX_CONNS,
    FCGI_MAX_REQS,
    FCGI_MPXS_CONNS,
    AbortRequest,
    BeginRequest,
    EndRequest,
    FastCGIError,
    GetValues,
    GetValuesResult,
    Params,
    ProtocolStatus,
    Record,
    RecordReader,
    Role,
    Stderr,
    Stdin,
    Stdout,
    UnknownRecord,
    UnknownType,
    encode,
    encode_pairs,
)
from servers.http.events import NEED_DATA, Signal
from tests.fastcgi.client import request_records

VALUES = {FCGI_MAX_CONNS: b"10", FCGI_MAX_REQS: b"50", FCGI_MPXS_CONNS: b"1"}


def app(**kw: int) -> ApplicationConnection:
    return ApplicationConnection(VALUES, **kw)


def feed(conn: ApplicationConnection, data: bytes, step: int = 1) -> list[object]:
    events: list[object] = []
    for start in range(0, len(data), step):
        conn.receive_data(data[start : start + step])
        while (event := conn.next_event()) is not NEED_DATA:
            events.append(event)
    return events


def decode(data: bytes) -> list[Record]:
    reader = RecordReader()
    reader.receive_data(data)
    out = []
    while not isinstance(record := reader.next_record(), Signal):
        out.append(record)
    return out


# -- the application's end ------------------------------------------------------------------
@pytest.mark.parametrize("step", [1, 5, 1000])
def test_a_request_becomes_events_however_it_is_split(step: int) -> None:
    wire = request_records(1, {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "4"}, b"body")
    events = feed(app(), wire, step)
    ready = events[0]
    assert isinstance(ready, RequestReady)
    assert ready.role is Role.RESPONDER and ready.keep_conn
    assert ready.params == {"REQUEST_METHOD": b"POST", "CONTENT_LENGTH": b"4"}
    assert b"".join(e.data for e in events[1:-1] if isinstance(e, StdinData)) == b"body"
    assert events[-1] == StdinEnded(ready.key)


def test_get_values_is_answered_with_the_known_names_only() -> None:
    conn = app()
    query = GetValues((FCGI_MAX_CONNS, b"FCGI_NO_SUCH_THING", FCGI_MPXS_CONNS))
    assert feed(conn, encode(query)) == []  # nothing for the application to see
    assert decode(conn.data_to_send()) == [
        GetValuesResult(((FCGI_MAX_CONNS, b"10"), (FCGI_MPXS_CONNS, b"1")))
    ]


@pytest.mark.parametrize("record_type", [0, 12, 200])
def test_an_unknown_management_type_gets_unknown_type(record_type: int) -> None:
    conn = app()
    assert feed(conn, encode(UnknownRecord(record_type, 0, b"abc"))) == []
    assert decode(conn.data_to_send()) == [UnknownType(record_type)]


def test_an_unknown_application_type_is_a_protocol_error() -> None:
    with pytest.raises(FastCGIError, match="sent to the application"):
        feed(app(), encode(UnknownRecord(42, 1, b"")))


@pytest.mark.parametrize("role", [Role.AUTHORIZER, Role.FILTER, 99])
def test_a_role_we_do_not_play_gets_unknown_role(role: int) -> None:
    conn = app(max_requests=5)
    wire = request_records(3, {"A": "b"}, b"ignored", role=role)
    assert feed(conn, wire) == []  # the id never became active: the rest is ignored (§3.3)
    assert decode(conn.data_to_send()) == [EndRequest(3, 0, ProtocolStatus.UNKNOWN_ROLE)]


def test_a_second_request_without_multiplexing_gets_cant_mpx_conn() -> None:
    conn = app(max_requests=1)
    feed(conn, request_records(1, {}))
    assert feed(conn, request_records(2, {})) == []
    assert decode(conn.data_to_send()) == [EndRequest(2, 0, ProtocolStatus.CANT_MPX_CONN)]


def test_past_the_cap_a_request_gets_overloaded() -> None:
    conn = app(max_requests=2)
    feed(conn, request_records(1, {}) + request_records(2, {}))
    assert feed(conn, request_records(3, {})) == []
    assert decode(conn.data_to_send()) == [EndRequest(3, 0, ProtocolStatus.OVERLOADED)]
    assert conn.refused == 1


def test_multiplexed_requests_are_told_apart_by_id() -> None:
    conn = app(max_requests=4)
    # Two requests, their records interleaved as a multiplexing web server may send them.
    a, b = request_records(7, {"X": "a"}, b"AAA"), request_records(9, {"X": "b"}, b"BB")
    interleaved = b"".join(x + y for x, y in zip(_records(a), _records(b), strict=False))
    events = feed(conn, interleaved + b"".join(_records(a)[len(_records(b)) :]))
    ready = {e.key.request_id: e for e in events if isinstance(e, RequestReady)}
    assert ready[7].params == {"X": b"a"} and ready[9].params == {"X": b"b"}
    body = {
        i: b"".join(e.data for e in events if isinstance(e, StdinData) and e.key == ready[i].key)
        for i in (7, 9)
    }
    assert body == {7: b"AAA", 9: b"BB"}


def _records(wire: bytes) -> list[bytes]:
    reader = RecordReader()
    reader.receive_data(wire)
    return [encode(r) for r in iter(reader.next_record, NEED_DATA)]  # type: ignore[arg-type]


def test_records_for_inactive_ids_are_ignored() -> None:
    conn = app()
    wire = encode(Params(5, encode_pairs([(b"A", b"b")]))) + encode(Stdin(5, b"x"))
    wire += encode(AbortRequest(5))
    assert feed(conn, wire) == []
    assert conn.data_to_send() == b""


@pytest.mark.parametrize(
    "wire",
    [
        encode(BeginRequest(1, Role.RESPONDER)) + encode(Stdin(1, b"early")),
        request_records(1, {}) + encode(Stdin(1, b"after the end")),
        request_records(1, {}) + encode(Params(1, b"")),
        encode(BeginRequest(1, Role.RESPONDER)) * 2,
    ],
    ids=["stdin-before-params-ended", "stdin-after-end", "params-after-end", "begin-twice"],
)
def test_records_out_of_order_are_protocol_errors(wire: bytes) -> None:
    with pytest.raises(FastCGIError):
        feed(app(), wire)


def test_records_only_an_application_sends_are_refused() -> None:
    for record in (Stdout(1, b"x"), Stderr(1, b"x"), EndRequest(1, 0)):
        with pytest.raises(FastCGIError, match="sent to the application"):
            feed(app(), encode(BeginRequest(1, Role.RESPONDER)) + encode(record))


def test_the_params_of_one_request_are_capped() -> None:
    conn = ApplicationConnection(VALUES, max_params=1000)
    wire = encode(BeginRequest(1, Role.RESPONDER)) + encode(
        Params(1, encode_pairs([(b"HTTP_X", b"x" * 600)] * 2))
    )
    with pytest.raises(FastCGIError, match="over 1000 bytes"):
        feed(conn, wire)


def test_a_connection_closed_inside_a_record_is_an_error() -> None:
    conn = app()
    conn.receive_data(encode(Stdin(1, b"abcdef"))[:5])
    conn.receive_data(b"")
    with pytest.raises(FastCGIError, match="closed inside a record"):
        conn.next_event()
    clean = app()
    clean.receive_data(b"")
    assert clean.next_event() == ConnectionEnded()


def test_end_request_ends_the_streams_and_frees_the_id() -> None:
    conn = app()
    (ready, *_) = feed(conn, request_records(1, {}, keep_conn=False))
    assert isinstance(ready, RequestReady)
    out = conn.stdout(ready.key, b"Status: 200 OK\r\n\r\n") + conn.stderr(ready.key, b"log")
    out += conn.end_request(ready.key, 3)
    assert decode(out) == [
        Stdout(1, b"Status: 200 OK\r\n\r\n"),
        Stderr(1, b"log"),
        Stdout(1, b""),  # §6.1: every stream used is ended
        Stderr(1, b""),
        EndRequest(1, 3, ProtocolStatus.REQUEST_COMPLETE),
    ]
    assert conn.must_close  # FCGI_KEEP_CONN was clear (§3.5)
    assert conn.stdout(ready.key, b"late") == b"" and conn.end_request(ready.key, 0) == b""


def test_abort_then_reuse_of_the_id_keeps_the_late_worker_out() -> None:
    conn = app()
    (first, *_) = feed(conn, request_records(1, {}))
    assert isinstance(first, RequestReady)
    assert feed(conn, encode(AbortRequest(1))) == [AbortRequested(first.key)]
    assert decode(conn.end_request(first.key, 0))[-1] == EndRequest(1, 0)
    (second, *_) = feed(conn, request_records(1, {}))  # the web server reuses id 1
    assert isinstance(second, RequestReady) and second.key != first.key
    assert conn.stdout(first.key, b"from the aborted request") == b""
    assert decode(conn.stdout(second.key, b"mine")) == [Stdout(1, b"mine")]


# -- the web server's end -------------------------------------------------------------------
def test_the_web_server_end_sends_begin_params_and_stdin() -> None:
    ws = WebServerConnection()
    wire = ws.begin({"REQUEST_METHOD": b"GET"}, request_id=1, keep_conn=True)
    wire += ws.stdin(b"xy") + ws.stdin(b"")
    assert decode(wire) == [
        BeginRequest(1, Role.RESPONDER, 1),
        Params(1, encode_pairs([(b"REQUEST_METHOD", b"GET")])),
        Params(1, b""),
        Stdin(1, b"xy"),
        Stdin(1, b""),
    ]
    with pytest.raises(FastCGIError):
        ws.stdin(b"more")


def _answer(ws: WebServerConnection, records: list[Record], step: int = 1) -> list[object]:
    wire = b"".join(encode(r) for r in records)
    events: list[object] = []
    for start in range(0, len(wire), step):
        ws.receive_data(wire[start : start + step])
        while (event := ws.next_event()) is not NEED_DATA:
            events.append(event)
    return events


def test_the_web_server_end_reads_an_answer_and_may_reuse() -> None:
    ws = WebServerConnection()
    ws.begin({}, keep_conn=True)
    answer = [Stdout(1, b"out"), Stderr(1, b"err"), Stdout(1, b""), EndRequest(1, 0)]
    assert _answer(ws, answer) == answer
    assert ws.state is ExchangeState.IDLE and ws.can_reuse


def test_without_keep_conn_the_connection_is_done_after_the_request() -> None:
    ws = WebServerConnection()
    ws.begin({}, keep_conn=False)
    _answer(ws, [Stdout(1, b""), EndRequest(1, 0)])
    assert ws.state is ExchangeState.CLOSED and not ws.can_reuse


@pytest.mark.parametrize(
    "records",
    [
        [Stdout(2, b"not my id")],  # nginx: "upstream sent unexpected FastCGI request id"
        [Stdout(1, b""), Stdout(1, b"after the end")],
        [EndRequest(1, 0), Stdout(1, b"after END_REQUEST")],
        [BeginRequest(1, Role.RESPONDER)],  # only a web server sends that
    ],
    ids=["wrong-id", "stdout-after-end", "after-end-request", "begin-from-app"],
)
def test_the_web_server_end_refuses_a_broken_answer(records: list[Record]) -> None:
    ws = WebServerConnection()
    ws.begin({})
    with pytest.raises(FastCGIError):
        _answer(ws, records)
    assert ws.state is ExchangeState.ERROR


def test_eof_before_end_request_is_seen() -> None:
    ws = WebServerConnection()
    ws.begin({})
    ws.receive_data(b"")
    assert ws.next_event() == ConnectionEnded()
    assert not ws.can_reuse


# -- both ends, talking ---------------------------------------------------------------------
def test_both_ends_through_a_byte_at_a_time_pipe() -> None:
    ws, ap = WebServerConnection(), app()
    events = feed(ap, ws.begin({"PATH_INFO": b"/x"}) + ws.stdin(b"hi") + ws.stdin(b""))
    ready = events[0]
    assert isinstance(ready, RequestReady) and ready.params == {"PATH_INFO": b"/x"}
    reply = ap.stdout(ready.key, b"Status: 204 No Content\r\n\r\n") + ap.end_request(ready.key, 0)
    seen = []
    for byte in reply:
        ws.receive_data(bytes([byte]))
        while (event := ws.next_event()) is not NEED_DATA:
            seen.append(event)
    assert seen == [Stdout(1, b"Status: 204 No Content\r\n\r\n"), Stdout(1, b""), EndRequest(1, 0)]
    assert ws.can_reuse
