"""The application server (``python -m servers fastcgi-app``) over real sockets.

Each test talks to a real server process with the small client of tests/fastcgi/client.py,
which can send what no web server would: records out of order, cut short, in a wrong
version. A broken connection must be closed, and only that one: most tests keep a second
connection busy and check that it is answered.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from servers.fastcgi.records import (
    FCGI_MAX_CONNS,
    FCGI_MAX_REQS,
    FCGI_MPXS_CONNS,
    AbortRequest,
    BeginRequest,
    EndRequest,
    GetValues,
    GetValuesResult,
    Params,
    ProtocolStatus,
    Role,
    Stdin,
    Stdout,
    UnknownType,
    encode,
    encode_pairs,
)
from servers.launch import ServerProcess
from tests.conftest import ServerPool
from tests.fastcgi.client import Client, family_params, request_records

HELLO = b"Status: 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 14\r\n\r\n"
HELLO += b"Hello, world!\n"


def app_server(pool: ServerPool, *options: str, env: dict[str, str] | None = None) -> ServerProcess:
    argv = [sys.executable, "-m", "servers", "fastcgi-app", "--bind", "127.0.0.1:0", *options]
    return pool(argv, http_probe=None, env=env, name="fastcgi-app")


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """One application server for the tests that do not need their own configuration."""
    pool = ServerPool()
    try:
        yield app_server(pool, "--threads", "8")
    finally:
        pool.stop_all()


def hello(client: Client, request_id: int = 1) -> None:
    client.send(request_records(request_id, family_params("/hello")))
    answer = client.answer(request_id)
    assert answer.stdout == HELLO
    assert answer.end == EndRequest(request_id, 0, ProtocolStatus.REQUEST_COMPLETE)


# -- management records ---------------------------------------------------------------------
def served_client(server: ServerProcess, within: float = 10.0) -> Client:
    """A connection on which a /hello is served (not refused as over FCGI_MAX_CONNS)."""
    deadline = time.monotonic() + within
    while True:
        client = Client(server.address)
        client.send(request_records(1, family_params("/hello")))
        if client.answer(1).end == EndRequest(1, 0, ProtocolStatus.REQUEST_COMPLETE):
            return client
        client.close()
        assert time.monotonic() < deadline, "no connection was served"
        time.sleep(0.05)


def test_get_values_reports_the_limits_it_enforces(start_server: ServerPool) -> None:
    server = app_server(start_server, "--max-conns", "2", "--max-reqs", "2", "--threads", "2")
    # The launcher's readiness probe was a connection too, and the server may not have
    # seen it close yet: a connection opened meanwhile is over the cap and refuses. So each
    # client proves it is served (a /hello answered) before the limits are tested.
    first, second = served_client(server), served_client(server)
    with first, second:
        first.send(encode(GetValues((FCGI_MAX_CONNS, FCGI_MAX_REQS, FCGI_MPXS_CONNS, b"NOPE"))))
        values = first.read_record()
        assert values == GetValuesResult(
            ((FCGI_MAX_CONNS, b"2"), (FCGI_MAX_REQS, b"2"), (FCGI_MPXS_CONNS, b"1"))
        )
        # FCGI_MAX_REQS=2 is true: two requests run, a third is OVERLOADED (§5.5). Each of
        # the two streams its first line at once and its second 1.5 s later: once both
        # first lines are here, both requests are running, however busy the machine.
        stream = family_params("/stream", query="chunks=2&delay_ms=1500")
        first.send(request_records(1, stream))
        first.send(request_records(2, stream))
        stdout = {1: b"", 2: b""}
        ended: set[int] = set()

        def read_first_until(done: Callable[[], bool]) -> None:
            while not done():
                record = first.read_record()
                assert record is not None, "the application closed the connection"
                if isinstance(record, Stdout):
                    stdout[record.request_id] += record.data
                elif isinstance(record, EndRequest):
                    ended.add(record.request_id)

        read_first_until(lambda: b"chunk 1" in stdout[1] and b"chunk 1" in stdout[2])
        assert not ended
        second.send(request_records(1, family_params("/hello")))
        assert second.answer(1).end == EndRequest(1, 0, ProtocolStatus.OVERLOADED)
        read_first_until(lambda: ended == {1, 2})
        for request_id in (1, 2):
            assert stdout[request_id].endswith(b"chunk 1 of 2\nchunk 2 of 2\n")
        # FCGI_MAX_CONNS=2 is true: with two connections open, a third is refused too.
        with Client(server.address) as third:
            third.send(request_records(1, family_params("/hello")))
            assert third.answer(1).end == EndRequest(1, 0, ProtocolStatus.OVERLOADED)
            third.wait_closed()
        hello(second)  # and the served connections go on


def test_without_multiplexing_a_second_request_gets_cant_mpx_conn(
    start_server: ServerPool,
) -> None:
    server = app_server(start_server, "--no-multiplex")
    with Client(server.address) as client:
        client.send(encode(GetValues((FCGI_MPXS_CONNS,))))
        assert client.read_record() == GetValuesResult(((FCGI_MPXS_CONNS, b"0"),))
        client.send(request_records(1, family_params("/sleep", query="ms=300")))
        client.send(request_records(2, family_params("/hello")))
        assert client.answer(2).end == EndRequest(2, 0, ProtocolStatus.CANT_MPX_CONN)
        assert client.answer(1).stdout.endswith(b"slept 300 ms\n")


def test_an_unknown_management_record_gets_unknown_type(server: ServerProcess) -> None:
    with Client(server.address) as client:
        client.send(bytes([1, 77, 0, 0, 0, 3, 5, 0]) + b"abc" + bytes(5))
        assert client.read_record() == UnknownType(77)
        hello(client)  # the connection goes on


def test_an_unknown_role_gets_unknown_role(server: ServerProcess) -> None:
    with Client(server.address) as client:
        client.send(request_records(1, family_params("/hello"), role=Role.AUTHORIZER))
        answer = client.answer(1)
        assert answer.end == EndRequest(1, 0, ProtocolStatus.UNKNOWN_ROLE)
        assert answer.stdout == b""  # the refusal is END_REQUEST alone
        hello(client)


# -- requests -------------------------------------------------------------------------------
def test_keep_conn_is_honoured_both_ways(server: ServerProcess) -> None:
    with Client(server.address) as client:
        hello(client)
        hello(client)  # FCGI_KEEP_CONN set: the same connection serves again
        client.send(request_records(1, family_params("/hello"), keep_conn=False))
        assert client.answer(1).stdout == HELLO
        client.wait_closed()  # FCGI_KEEP_CONN clear: the application closes (§3.5)


def test_multiplexed_requests_are_answered_with_their_exact_ids(server: ServerProcess) -> None:
    slow = request_records(0x1234, family_params("/sleep", query="ms=500"))
    fast = request_records(7, family_params("/hello"))
    with Client(server.address) as client:
        # Interleaved byte runs: the slow request's BEGIN, the fast one whole, the rest.
        client.send(slow[:16] + fast + slow[16:])
        first = client.read_record()
        # The fast request is answered while the slow one still runs: two at once.
        assert isinstance(first, Stdout) and first.request_id == 7
        fast_answer = client.answer(7)
        assert first.data + fast_answer.stdout == HELLO
        slow_answer = client.answer(0x1234)
        assert slow_answer.stdout.endswith(b"slept 500 ms\n")
        assert slow_answer.end == EndRequest(0x1234, 0, ProtocolStatus.REQUEST_COMPLETE)


def test_a_slow_request_does_not_hold_up_other_connections(server: ServerProcess) -> None:
    # The thread that reads a request runs it (leader and followers, app_server.py). While
    # it sleeps, another thread must take over the reading, or the next connection's
    # request waits for the sleep to end.
    with Client(server.address) as slow, Client(server.address) as fast:
        hello(slow)
        hello(fast)
        slow.send(request_records(1, family_params("/sleep", query="ms=2500")))
        time.sleep(0.2)  # the sleep has begun
        started = time.monotonic()
        hello(fast)
        assert time.monotonic() - started < 1.5
        assert slow.answer(1).stdout.endswith(b"slept 2500 ms\n")


def test_abort_ends_the_request_with_a_real_end_request(server: ServerProcess) -> None:
    with Client(server.address) as client:
        # A request that would take a minute: only the abort can end it within the
        # client's deadline (10 s), and its END_REQUEST comes with no output at all.
        client.send(request_records(1, family_params("/sleep", query="ms=60000")))
        client.send(encode(AbortRequest(1)))
        answer = client.answer(1)
        assert answer.stdout == b""
        assert answer.end == EndRequest(1, 0, ProtocolStatus.REQUEST_COMPLETE)
        hello(client, 1)  # id 1 is free again at once, while the old worker still sleeps


def test_stdin_reaches_the_application_in_pieces(server: ServerProcess) -> None:
    body = bytes(range(256)) * 1000  # 256000 bytes: four STDIN records
    params = family_params("/upload", "POST", CONTENT_LENGTH=str(len(body)))
    with Client(server.address) as client:
        client.send(request_records(3, params, body))
        reply = client.answer(3).stdout
        assert b'"bytes":256000' in reply


def test_an_unread_body_does_not_stall_the_connection(server: ServerProcess) -> None:
    # /hello refuses a POST (405) without reading its 2 MiB body: far more than a
    # request's STDIN buffer holds. Once the request ended, its bytes are dropped, so the
    # connection's reader never waits on them, and the connection serves on (keep-conn).
    body = b"x" * (2 << 20)
    params = family_params("/hello", "POST", CONTENT_LENGTH=str(len(body)))
    with Client(server.address) as client:
        client.send(request_records(1, params, body))
        assert client.answer(1).stdout.startswith(b"Status: 405 Method Not Allowed\r\n")
        hello(client, 2)


def test_the_wsgi_side_serves_the_family(start_server: ServerPool) -> None:
    server = app_server(start_server, "--wsgi", "apps.wsgi:app")
    with Client(server.address) as client:
        hello(client)
        client.send(request_records(2, family_params("/whoami")))
        head, _, body = client.answer(2).stdout.partition(b"\r\n\r\n")
        assert head.startswith(b"Status: 200 OK\r\n")
        report = json.loads(body)
        assert report["era"] == "fastcgi" and report["pid"] == server.pid  # environ says so
        assert report["thread"].startswith("fastcgi-worker-")


def test_wsgi_errors_become_stderr_records(start_server: ServerPool) -> None:
    server = app_server(start_server, "--wsgi", "tests.fastcgi.sample_apps:wsgi_with_errors")
    with Client(server.address) as client:
        client.send(request_records(1, family_params("/")))
        answer = client.answer(1)
        assert answer.stderr == b"a line for the web server's log\n"
        assert answer.stdout.endswith(b"\r\n\r\nfine\n")


def test_an_application_error_is_a_500_without_details(start_server: ServerPool) -> None:
    server = app_server(start_server, "--app", "tests.fastcgi.sample_apps:crash")
    with Client(server.address) as client:
        client.send(request_records(1, family_params("/")))
        answer = client.answer(1)
        assert answer.stdout.startswith(b"Status: 500 Internal Server Error\r\n")
        assert b"secret" not in answer.stdout + answer.stderr  # rule 8: logged, never sent
        assert answer.stderr == b"fastcgi-app: the application raised RuntimeError\n"
        assert answer.end == EndRequest(1, 1, ProtocolStatus.REQUEST_COMPLETE)
    assert "a secret that must not reach the client" in server.output()  # our own log


def test_the_exit_status_becomes_app_status(start_server: ServerPool) -> None:
    server = app_server(start_server, "--app", "tests.fastcgi.sample_apps:exit_seven")
    with Client(server.address) as client:
        client.send(request_records(1, family_params("/")))
        assert client.answer(1).end == EndRequest(1, 7, ProtocolStatus.REQUEST_COMPLETE)


# -- who may connect ------------------------------------------------------------------------
def test_fcgi_web_server_addrs_is_an_allow_list(start_server: ServerPool) -> None:
    server = app_server(start_server, env={"FCGI_WEB_SERVER_ADDRS": "127.0.0.2, 10.0.0.1"})
    with Client(server.address, source="127.0.0.1") as stranger:
        stranger.send(request_records(1, family_params("/hello")))
        assert stranger.wait_closed() == []  # §3.2: closed, not a record in answer
    with Client(server.address, source="127.0.0.2") as listed:
        hello(listed)


# -- bad input: that connection closes, the others go on -----------------------------------
BAD_INPUTS = {
    "wrong-version": bytes([2, 1, 0, 1, 0, 8, 0, 0]) + bytes(8),
    "http-spoken-to-fastcgi": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "huge-pair-length": encode(BeginRequest(1, Role.RESPONDER, 1))
    + encode(Params(1, bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x7F]) + b"x" * 100)),
    "stdin-before-params-end": encode(BeginRequest(1, Role.RESPONDER, 1)) + encode(Stdin(1, b"x")),
    "begin-with-a-short-body": bytes([1, 1, 0, 1, 0, 4, 4, 0]) + bytes(8),
}


@pytest.mark.parametrize("bad", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_closes_only_that_connection(server: ServerProcess, bad: str) -> None:
    with Client(server.address) as busy, Client(server.address) as broken:
        busy.send(request_records(1, family_params("/sleep", query="ms=300")))
        broken.send(BAD_INPUTS[bad])
        broken.wait_closed()
        assert busy.answer(1).stdout.endswith(b"slept 300 ms\n")
        hello(busy)


def test_a_truncated_record_then_close(server: ServerProcess) -> None:
    with Client(server.address) as busy:
        busy.send(request_records(1, family_params("/sleep", query="ms=300")))
        with socket.create_connection(server.address) as cut:
            cut.sendall(encode(BeginRequest(1, Role.RESPONDER, 1))[:5])
        assert busy.answer(1).stdout.endswith(b"slept 300 ms\n")
    assert "closed inside a record" in server.output()


def test_records_for_inactive_ids_are_ignored(server: ServerProcess) -> None:
    with Client(server.address) as client:
        client.send(encode(Stdin(9, b"for nobody")) + encode(AbortRequest(9)))
        client.send(encode(Params(9, encode_pairs([(b"A", b"b")]))))
        hello(client)  # §3.3: ignored, and the connection is fine


# -- stopping ------------------------------------------------------------------------------
def test_sigterm_drains_a_request_in_flight(start_server: ServerPool) -> None:
    server = app_server(start_server)
    with Client(server.address) as busy, Client(server.address) as idle:
        hello(idle)
        busy.send(request_records(1, family_params("/sleep", query="ms=800")))
        time.sleep(0.2)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        idle.wait_closed()  # an idle connection is closed at once
        answer = busy.answer(1)  # the request in flight completes
        assert answer.stdout.endswith(b"slept 800 ms\n")
        assert answer.end == EndRequest(1, 0, ProtocolStatus.REQUEST_COMPLETE)
        busy.wait_closed()  # and then its connection is closed by the server
    assert server.proc.wait(10) == 0
