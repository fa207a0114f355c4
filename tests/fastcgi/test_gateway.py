"""The HTTP gateway (``python -m servers fastcgi``) and what it does when upstream fails.

Two kinds of upstream: our real application server, started and stopped (and restarted)
by the tests, and a scripted fake, a thread in the test that reads one request and then
answers whatever the test wants, including what no application should ever say.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from servers.fastcgi.records import (
    EndRequest,
    Params,
    ProtocolStatus,
    RecordReader,
    Stdin,
    Stdout,
    decode_pairs,
    encode,
)
from servers.http.events import Signal
from servers.launch import ServerProcess, free_port, our_server_argv
from tests.conftest import ServerPool

HELLO = b"Hello, world!\n"


def gateway(pool: ServerPool, *options: str) -> ServerProcess:
    return pool(our_server_argv("fastcgi", *options), name="fastcgi")


def app_server(pool: ServerPool, bind: str, *options: str) -> ServerProcess:
    argv = [sys.executable, "-m", "servers", "fastcgi-app", "--bind", bind, *options]
    return pool(argv, http_probe=None, name="fastcgi-app")


def get(server: ServerProcess, target: str, **kw: object) -> httpx.Response:
    return httpx.get(server.url + target.lstrip("/"), timeout=30, trust_env=False, **kw)  # type: ignore[arg-type]


# -- a scripted upstream --------------------------------------------------------------------
# (request number, its params) -> the bytes to answer with. Requests count from 1, and
# the first one is launch's readiness probe (GET /): scripts look at the path.
Script = Callable[[int, dict[bytes, bytes]], bytes]


class FakeUpstream:
    """Accepts connections; on each, reads one request up to the end of STDIN, then sends
    the script's answer and closes."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.params: list[dict[bytes, bytes]] = []  # of every request, in order
        self.sockets: list[socket.socket] = []  # accepted, for close() to end their threads
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.sockets.append(sock)
            threading.Thread(target=self._answer, args=(sock,), daemon=True).start()

    def _answer(self, sock: socket.socket) -> None:
        with sock:
            sock.settimeout(10)
            reader = RecordReader()
            pairs = b""
            ended = False
            while not ended and (data := sock.recv(65536)):
                reader.receive_data(data)
                while not isinstance(record := reader.next_record(), Signal):
                    ended = ended or (isinstance(record, Stdin) and not record.data)
                    pairs += record.data if isinstance(record, Params) else b""
            params = dict(decode_pairs(pairs))
            with self.lock:
                self.params.append(params)
                number = len(self.params)
            # The gateway may have closed already (it reads the answer while it arrives
            # and stops at the first broken record): then the rest has nowhere to go.
            with contextlib.suppress(OSError):
                sock.sendall(self.script(number, params))
                sock.shutdown(socket.SHUT_WR)
                sock.recv(65536)  # until the gateway closes (or reuses and finds EOF)

    def close(self) -> None:
        # shutdown() wakes the threads blocked in accept() and recv(), which close() alone
        # does not: they end now, instead of lingering in the test process for seconds.
        with self.lock:
            sockets = [self.listener, *self.sockets]
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.listener.close()


@pytest.fixture
def fakes(start_server: ServerPool) -> Iterator[list[FakeUpstream]]:
    started: list[FakeUpstream] = []
    yield started
    for upstream in started:
        upstream.close()


@pytest.fixture
def fake(start_server: ServerPool, fakes: list[FakeUpstream]) -> Callable[[Script], ServerProcess]:
    """``fake(script)``: a gateway in front of a scripted upstream (``fakes[-1]``)."""

    def start(script: Script) -> ServerProcess:
        upstream = FakeUpstream(script)
        fakes.append(upstream)
        return gateway(start_server, "--upstream", f"127.0.0.1:{upstream.port}")

    return start


def stdout(text: bytes) -> bytes:
    return encode(Stdout(1, text)) + encode(Stdout(1, b""))


END = encode(EndRequest(1, 0))
OK = stdout(b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nfake\n") + END


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (encode(EndRequest(1, 0, ProtocolStatus.OVERLOADED)), 503),
        (encode(EndRequest(1, 0, ProtocolStatus.UNKNOWN_ROLE)), 500),
        (encode(Stdout(1, b"Status: 200 OK\r\nContent-Type: text/plain\r\n")), 502),  # EOF
        (stdout(b"no header line here\r\n\r\n") + encode(EndRequest(1, 0)), 502),
        (stdout(b"Status: 200 OK\r\nX: a\rb\r\n\r\n") + encode(EndRequest(1, 0)), 502),
        (encode(Stdout(2, b"Status: 200 OK\r\n\r\n")), 502),  # another request's id
        (b"HTTP/1.1 200 OK\r\n\r\n", 502),  # not FastCGI at all
        (stdout(b"X-Only: headers, never a blank line") + encode(EndRequest(1, 0)), 502),
        (b"", 502),
        # A whole response in one read goes to the core in one call (send_response),
        # which refuses a head with two lengths as the three-call path did.
        (stdout(b"Content-Type: a/b\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n") + END, 502),
    ],
    ids=[
        "overloaded",
        "unknown-role",
        "eof-before-end",
        "not-cgi",
        "header-splitting",
        "wrong-id",
        "http",
        "unfinished-head",
        "silence",
        "two-lengths",
    ],
)
def test_protocol_answers_map_to_http_statuses(
    fake: Callable[[Script], ServerProcess], answer: bytes, status: int
) -> None:
    server = fake(lambda n, p: answer)
    reply = get(server, "/x")
    assert reply.status_code == status
    assert b"fake" not in reply.content and b"\rb" not in reply.content
    if status == 503:
        assert reply.headers["retry-after"] == "1"
    assert get(server, "/x").status_code == status  # and the gateway goes on


def test_eof_after_the_response_started_cuts_it_short(
    fake: Callable[[Script], ServerProcess],
) -> None:
    server = fake(lambda n, p: encode(Stdout(1, b"Status: 200 OK\r\nContent-Type: a/b\r\n\r\nhal")))
    for _ in range(2):  # and the gateway serves on after each
        with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
            get(server, "/x")  # the 200 went out: all the gateway can still do is close


def test_cant_mpx_conn_is_retried_on_a_new_connection(
    fake: Callable[[Script], ServerProcess],
) -> None:
    cant = encode(EndRequest(1, 0, ProtocolStatus.CANT_MPX_CONN))
    paths = []

    def script(n: int, params: dict[bytes, bytes]) -> bytes:
        paths.append(params[b"PATH_INFO"])
        return cant if paths.count(b"/x") == 1 and paths[-1] == b"/x" else OK

    server = fake(script)
    reply = get(server, "/x")
    assert (reply.status_code, reply.content) == (200, b"fake\n")
    assert paths.count(b"/x") == 2  # refused once, then served on a new connection


def test_a_local_redirect_is_served_by_the_gateway(
    fake: Callable[[Script], ServerProcess], fakes: list[FakeUpstream]
) -> None:
    # RFC 3875 §6.2.2 (kept by FastCGI §6.1): "Location: /path" alone is not sent to the
    # client; the gateway asks again, as a GET for the new path, and answers with that.
    redirect = stdout(b"Location: /elsewhere?k=v\r\n\r\n") + encode(EndRequest(1, 0))
    server = fake(lambda n, p: redirect if p[b"PATH_INFO"] == b"/start" else OK)
    reply = httpx.post(server.url + "start", content=b"body", trust_env=False, timeout=30)
    assert (reply.status_code, reply.content) == (200, b"fake\n")
    first, second = fakes[-1].params[-2:]
    assert (first[b"REQUEST_METHOD"], first[b"PATH_INFO"]) == (b"POST", b"/start")
    assert (second[b"REQUEST_METHOD"], second[b"PATH_INFO"]) == (b"GET", b"/elsewhere")
    assert second[b"QUERY_STRING"] == b"k=v" and b"CONTENT_LENGTH" not in second


def test_a_huge_cgi_head_is_refused(fake: Callable[[Script], ServerProcess]) -> None:
    head = b"Status: 200 OK\r\n" + b"X-Pad: " + b"p" * 40_000 + b"\r\n\r\nbody"
    server = fake(lambda n, p: stdout(head) + encode(EndRequest(1, 0)))
    assert get(server, "/x").status_code == 502  # Apache CVE-2014-3583: bound it


# -- the real application server going away and coming back --------------------------------
def test_502_when_the_application_server_is_down(start_server: ServerPool) -> None:
    server = gateway(start_server, "--upstream", f"127.0.0.1:{free_port()}")
    reply = get(server, "/hello")
    assert reply.status_code == 502
    assert b"cannot connect" in reply.content


def test_504_when_the_application_is_too_slow(start_server: ServerPool) -> None:
    upstream = app_server(start_server, "127.0.0.1:0")
    server = gateway(
        start_server, "--upstream", f"127.0.0.1:{upstream.port}", "--upstream-timeout", "0.5"
    )
    assert get(server, "/sleep?ms=3000").status_code == 504
    assert get(server, "/hello").content == HELLO  # the next request is fine


def test_recovery_after_the_application_server_restarts(start_server: ServerPool) -> None:
    bind = f"127.0.0.1:{free_port()}"
    first = app_server(start_server, bind)
    server = gateway(start_server, "--upstream", bind)
    with httpx.Client(base_url=server.url, trust_env=False, timeout=30) as client:
        assert client.get("/hello").content == HELLO  # its connection is now kept
        first.stop()
        assert client.get("/hello").status_code == 502
        second = app_server(start_server, bind)
        # The kept connection died with the first server; the gateway notices, reconnects.
        reply = client.get("/whoami")
        assert reply.status_code == 200 and reply.json()["pid"] == second.pid


def test_several_upstreams_in_turn_skipping_a_dead_one(start_server: ServerPool) -> None:
    live = app_server(start_server, "127.0.0.1:0")
    dead = f"127.0.0.1:{free_port()}"
    server = gateway(start_server, "--upstream", dead, "--upstream", f"127.0.0.1:{live.port}")
    for _ in range(4):
        assert get(server, "/hello").content == HELLO


def test_the_default_application_server_is_restarted_if_it_dies(
    start_server: ServerPool,
) -> None:
    server = gateway(start_server)
    child = get(server, "/whoami").json()["pid"]
    assert child != server.pid and child in server.group_pids()  # our child, our group
    os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        reply = get(server, "/whoami")
        if reply.status_code == 200 and reply.json()["pid"] != child:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the application server was not restarted")


# -- the client's side ----------------------------------------------------------------------
def test_one_thread_serves_many_clients_at_once(start_server: ServerPool) -> None:
    """The gateway is one event loop: twenty slow requests run at the same time (the
    application server's pool runs them), yet the gateway's process has one thread."""
    server = gateway(start_server)
    socks = [socket.create_connection(server.address, timeout=30) for _ in range(20)]
    try:
        started = time.monotonic()
        for sock in socks:
            sock.sendall(b"GET /sleep?ms=700 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert os.listdir(f"/proc/{server.pid}/task") == [str(server.pid)]
        for sock in socks:
            reply = b""
            while not reply.endswith(b"slept 700 ms\n"):
                chunk = sock.recv(4096)
                assert chunk, f"closed early after {reply!r}"
                reply += chunk
        # One after another, the twenty would take 14 s; together, about 0.7 s.
        assert time.monotonic() - started < 7
    finally:
        for sock in socks:
            sock.close()


def test_pipelined_requests_are_answered_in_order(start_server: ServerPool) -> None:
    server = gateway(start_server)
    with socket.create_connection(server.address, timeout=30) as sock:
        sock.sendall(
            b"GET /sleep?ms=200 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    bodies = [b"slept 200 ms\n", b"hello", HELLO]
    positions = [reply.find(body) for body in bodies]
    assert -1 not in positions and positions == sorted(positions)
    assert reply.count(b"HTTP/1.1 200 OK\r\n") == 3


def test_a_client_that_leaves_gets_its_request_aborted(start_server: ServerPool) -> None:
    server = gateway(start_server, "--trace")
    with socket.create_connection(server.address) as sock:
        sock.sendall(b"GET /sleep?ms=2000 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while "aborted: END_REQUEST now" not in server.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    output = server.output()
    assert "ABORT_REQUEST id=1" in output  # §5.4: sent by the gateway...
    assert "aborted: END_REQUEST now" in output  # ...and answered by the application
    assert get(server, "/hello").content == HELLO


def test_expect_100_continue(start_server: ServerPool) -> None:
    server = gateway(start_server)
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(b"hello")
        reply = b""
        while not reply.endswith(b"hello"):
            reply += sock.recv(4096)
        assert reply.startswith(b"HTTP/1.1 200 OK\r\n")


def test_trace_shows_the_records_on_both_sides(start_server: ServerPool) -> None:
    server = gateway(start_server, "--trace")
    assert get(server, "/hello?x=1").content == HELLO
    assert get(server, "/hello").content == HELLO  # on the same, kept, upstream connection
    output = server.output()
    # FCGI_KEEP_CONN from the web server's side: one connection to the application server
    # (the launcher's readiness probe connects to the gateway, never to the app server).
    assert output.count("* open unix socket") == 1
    assert "(a kept connection)" in output
    # The gateway's side: the record's header in hex, then what it means.
    assert "< [fcgi] 01 01 00 01 00 08 00 00  BEGIN_REQUEST id=1 role=RESPONDER" in output
    assert "QUERY_STRING=x=1" in output and "PATH_INFO=/hello" in output
    assert "> [fcgi] 01 03 00 01 00 08 00 00  END_REQUEST id=1 app_status=0" in output
    # The application server's side, in the same terminal, marked "app".
    assert "app c1 < [fcgi] 01 01 00 01 00 08 00 00  BEGIN_REQUEST" in output
    assert "STDOUT id=1 content=" in output and "(end of stream)" in output


def test_sigterm_drains_a_request_in_flight(start_server: ServerPool) -> None:
    server = gateway(start_server)
    # A raw socket, connected before the signal: an httpx client can take longer than the
    # 0.3 s below just to connect on a busy machine, and would find the listener closed.
    with socket.create_connection(server.address, timeout=30) as sock:
        sock.sendall(b"GET /sleep?ms=800 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        os.killpg(server.pid, signal.SIGTERM)  # the whole group, as launch.stop() and Ctrl-C do
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk  # until the gateway closes: it serves no other request now
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert reply.endswith(b"\r\n\r\nslept 800 ms\n")
    assert server.proc is not None and server.proc.wait(10) == 0
    assert server.group_pids() == []  # the application server is gone too
