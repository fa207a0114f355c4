"""The server around the interface: keep-alive, pipelining, chunked bodies both ways, the
bounded pool and its 503, slow clients, bad input, timeouts and a graceful stop.

Most tests here start a server of their own, with the option they are about (a pool of
one thread, a short idle timeout); none asserts how fast anything is, only what happens.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from servers.launch import ServerProcess
from tests.conftest import ServerPool

from .support import (
    Gates,
    Wire,
    client,
    exchange,
    exchange_and_close,
    get,
    post,
    start_wsgi,
)


# -- keep-alive, pipelining, chunked -----------------------------------------------------------
def test_keep_alive_serves_requests_one_after_another(server: ServerProcess) -> None:
    with Wire(server) as wire:
        for _ in range(3):
            wire.send(get("/hello"))
            reply = wire.reply()
            assert (reply.status, reply.body) == (200, b"Hello, world!\n")
        assert wire.quiet_for(0.1)  # still open: nobody closed it


def test_pipelined_requests_are_answered_in_order(server: ServerProcess) -> None:
    """RFC 9112 §9.3.2; the third request has a body, the last closes the connection."""
    requests = (
        get("/echo?first")
        + get("/sleep?ms=50")
        + post("/echo", b"third", "Content-Type: text/plain")
        + get("/echo?fourth", "Connection: close")
    )
    with Wire(server) as wire:
        wire.send(requests)
        bodies = [wire.reply().body for _ in range(4)]
        assert wire.closed_by_server()
    assert bodies == [b"first", b"slept 50 ms\n", b"third", b"fourth"]


def test_a_chunked_upload_is_de_chunked_for_the_app(server: ServerProcess) -> None:
    body = os.urandom(300_000)
    reply = exchange(server, post("/upload", body, chunked=True))
    expected = {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    assert json.loads(reply.body) == expected


def test_head_gets_the_headers_and_no_body(server: ServerProcess) -> None:
    with Wire(server) as wire:
        wire.send(get("/hello").replace(b"GET", b"HEAD", 1) + get("/hello"))
        head = wire.reply("HEAD")
        assert (head.headers[b"content-length"], head.body) == (b"14", b"")
        assert wire.reply().body == b"Hello, world!\n"  # framing intact after the HEAD


def test_http_1_0_closes_unless_asked_to_keep_alive(server: ServerProcess) -> None:
    reply, closed = exchange_and_close(server, get("/hello", version="1.0"))
    assert reply.body == b"Hello, world!\n" and closed
    with Wire(server) as wire:
        wire.send(get("/hello", "Connection: keep-alive", version="1.0"))
        assert wire.reply().headers[b"connection"] == b"keep-alive"


# -- the pool ------------------------------------------------------------------------------------
def test_the_pool_has_the_threads_it_was_given(start_server: ServerPool) -> None:
    server = start_wsgi(start_server, "--threads", "3")
    threads = os.listdir(f"/proc/{server.pid}/task")
    assert len(threads) == 1 + 3  # the I/O thread, and the workers


def test_requests_run_on_the_pools_threads(server: ServerProcess) -> None:
    with client(server) as http:
        names = {http.get("/thread").text.strip() for _ in range(20)}
    assert names and all(name.startswith("wsgi-worker-") for name in names)


def test_a_full_pool_answers_503_with_retry_after(start_server: ServerPool, gates: Gates) -> None:
    """One thread, a queue of one: the first request holds the thread, the next one waits
    in the queue, a third one finds both taken and is answered at once."""
    server = start_wsgi(start_server, "--threads", "1", "--backlog", "1", gates=gates)
    holder = Wire(server)
    holder.send(get("/gate?token=pool-full"))
    gates.wait("pool-full")
    second, third = Wire(server), Wire(server)
    second.send(get("/hello"))
    third.send(get("/hello"))
    # Which of the two is queued depends on the order the server read them: the one that
    # hears back now is the refused one.
    readable, _, _ = select.select([second.sock, third.sock], [], [], 10)
    assert len(readable) == 1
    busy, queued = (second, third) if readable[0] is second.sock else (third, second)
    refused = busy.reply()
    assert refused.status == 503
    assert refused.headers[b"retry-after"] == b"1"
    assert refused.headers[b"connection"] == b"close"
    assert busy.closed_by_server()
    gates.release("pool-full")
    assert holder.reply().body == b"released\n"
    assert queued.reply().body == b"Hello, world!\n"
    for wire in (holder, second, third):
        wire.close()


# -- slow clients --------------------------------------------------------------------------------
def test_slow_clients_do_not_take_the_threads(start_server: ServerPool) -> None:
    """Slowloris: 20 connections send a request head one byte at a time. Heads are read by
    the I/O thread, so the two workers stay free for a normal request; and each slow head
    gets --request-timeout in all, then 408."""
    server = start_wsgi(start_server, "--threads", "2", "--request-timeout", "2")
    give_up = time.monotonic() + 20  # the server should answer long before
    outcomes: list[bytes] = []
    started = threading.Barrier(21)

    def crawl() -> None:
        head = b"GET /hello HTTP/1.1\r\nHost: test\r\nX-Slow: " + b"a" * 1000
        answer = b""
        with socket.create_connection(server.address, timeout=10) as sock:
            for index, byte in enumerate(head):
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break  # the server gave up on us; its answer may still be readable
                if index == 0:
                    started.wait(timeout=20)
                if select.select([sock], [], [], 0.1)[0] or time.monotonic() > give_up:
                    break
            with contextlib.suppress(OSError):
                answer = sock.recv(4096)
        outcomes.append(answer)

    crawlers = [threading.Thread(target=crawl) for _ in range(20)]
    for crawler in crawlers:
        crawler.start()
    started.wait(timeout=20)  # every crawler has sent its first byte
    with client(server) as http:
        assert http.get("/hello").text == "Hello, world!\n"
    for crawler in crawlers:
        crawler.join()
    assert len(outcomes) == 20
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in outcomes), outcomes


def test_an_idle_keep_alive_connection_is_closed(start_server: ServerPool) -> None:
    server = start_wsgi(start_server, "--idle-timeout", "0.5")
    with Wire(server) as wire:
        wire.send(get("/hello"))
        assert wire.reply().status == 200
        assert wire.closed_by_server(timeout=10)


def test_a_client_that_stops_sending_its_body_lets_go_of_the_thread(
    start_server: ServerPool,
) -> None:
    """The body is read by the worker, each piece within --request-timeout; a client that
    stalls loses its connection, and the thread is free again."""
    server = start_wsgi(start_server, "--threads", "1", "--request-timeout", "1")
    with Wire(server) as stalled:
        stalled.send(b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n")
        stalled.send(b"only ten b")
        assert stalled.closed_by_server(timeout=10)
    with client(server) as http:
        assert http.get("/hello").status_code == 200


@pytest.mark.parametrize("kind", ["bytes", "file"], ids=["iterable", "sendfile"])
def test_a_client_that_stops_reading_its_response_lets_go_of_the_thread(
    start_server: ServerPool, kind: str
) -> None:
    """The response is written by the worker, each wait for room in the socket within
    --request-timeout; a client that never reads loses its connection, and the thread is
    free again. Both ways out: the iterable's chunks, and sendfile()."""
    server = start_wsgi(start_server, "--threads", "1", "--request-timeout", "1")
    with socket.socket() as stalled:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills up soon
        stalled.connect(server.address)
        stalled.sendall(get(f"/file?size=20000000&kind={kind}"))
        started = time.monotonic()
        with client(server, timeout=20) as http:
            assert http.get("/hello").status_code == 200
        # Not at once: the worker did wait for the reader, about --request-timeout.
        assert time.monotonic() - started > 0.5


# -- bad input -----------------------------------------------------------------------------------
BAD_REQUESTS = {
    "garbage": (b"NOT HTTP AT ALL\r\n\r\n", 400),
    "bare LF": (b"GET /hello HTTP/1.1\nHost: test\n\n", 400),
    "no Host": (b"GET /hello HTTP/1.1\r\n\r\n", 400),
    "CL and TE": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "Content-Length +5": (b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: +5\r\n\r\n", 400),
    "huge header": (b"GET / HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
    "long target": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: test\r\n\r\n", 414),
    "gzip coding": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        501,
    ),
    "bad chunk size, read by the app": (
        b"POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    "body too large": (
        b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 99999999999\r\n\r\n",
        413,
    ),
}


@pytest.mark.parametrize("name", BAD_REQUESTS)
def test_bad_input_is_answered_and_the_server_goes_on(server: ServerProcess, name: str) -> None:
    data, status = BAD_REQUESTS[name]
    reply, closed = exchange_and_close(server, data)
    assert (reply.status, closed) == (status, True)
    assert b"Traceback" not in reply.body
    with client(server) as http:
        assert http.get("/hello").status_code == 200


def test_clients_that_reset_or_vanish_do_not_stop_the_server(server: ServerProcess) -> None:
    """Resets at every stage: before a byte, mid-head, mid-body, mid-response."""
    linger = struct.pack("ii", 1, 0)  # close() sends RST instead of FIN
    stages = [
        b"",
        b"GET /hel",
        post("/upload", b"x" * 100)[:-50],
        get("/stream?chunks=50&delay_ms=10"),
    ]
    for _ in range(5):
        for data in stages:
            sock = socket.create_connection(server.address)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            if data:
                sock.sendall(data)
            time.sleep(0.01)
            sock.close()
    with client(server) as http:
        assert http.get("/hello").status_code == 200


# -- stopping ------------------------------------------------------------------------------------
def test_sigterm_lets_the_request_in_flight_finish_and_exits_0(
    start_server: ServerPool, gates: Gates
) -> None:
    server = start_wsgi(start_server, gates=gates)
    with Wire(server) as wire:
        wire.send(get("/gate?token=sigterm"))
        gates.wait("sigterm")
        os.kill(server.pid, signal.SIGTERM)
        # The listener closes at once: a new client is refused...
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(server.address, timeout=1).close()
            except (ConnectionRefusedError, ConnectionResetError):
                # Refused once the listener is closed; reset if this attempt was still in
                # its accept queue as it closed. Either way the server took no new client.
                break
            assert time.monotonic() < deadline, "still accepting after SIGTERM"
            time.sleep(0.05)
        # ...while the request already running gets its whole answer.
        gates.release("sigterm")
        reply = wire.reply()
        assert (reply.status, reply.body, reply.complete) == (200, b"released\n", True)
        assert reply.headers.get(b"connection") == b"close" or wire.closed_by_server()
    assert server.proc is not None and server.proc.wait(timeout=15) == 0


def test_sigterm_gives_up_on_a_request_after_the_graceful_timeout(
    start_server: ServerPool, gates: Gates
) -> None:
    server = start_wsgi(start_server, "--graceful-timeout", "0.5", gates=gates)
    with Wire(server) as wire:
        wire.send(get("/gate?token=never-released"))
        gates.wait("never-released")
        os.kill(server.pid, signal.SIGTERM)
        assert server.proc is not None and server.proc.wait(timeout=15) == 0
        assert wire.closed_by_server()


def test_sigterm_closes_idle_connections(start_server: ServerPool) -> None:
    server = start_wsgi(start_server)
    with Wire(server) as wire:
        wire.send(get("/hello"))
        assert wire.reply().status == 200
        os.kill(server.pid, signal.SIGTERM)
        assert wire.closed_by_server()
    assert server.proc is not None and server.proc.wait(timeout=15) == 0


def test_bad_options_are_a_usage_error() -> None:
    for option in ("--threads", "--backlog"):
        result = subprocess.run(
            [sys.executable, "-m", "servers", "wsgi", "--port", "0", option, "0"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 2 and "must be at least 1" in result.stderr
