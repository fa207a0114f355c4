"""The server under bad clients: malformed input, slowloris, idle connections, too many
connections, and flow control both ways (a client that does not read, an app that does
not receive), with the server's memory measured from /proc, never its speed."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from servers.launch import ServerProcess
from servers.websocket import Opcode, frame_bytes
from tests.conftest import ServerPool
from tests.wsgi.support import Gates, Wire, exchange_and_close, get

from .conftest import start_asgi
from .test_websocket import RawWebSocket, open_ws

MiB = 1024 * 1024


def rss(server: ServerProcess) -> int:
    """The server's resident memory in bytes (VmRSS, /proc/PID/status)."""
    for line in Path(f"/proc/{server.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def still_serving(server: ServerProcess) -> bool:
    with httpx.Client(base_url=server.url, timeout=10, trust_env=False) as client:
        return client.get("/whoami").status_code == 200


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\nHost: x\n\n", 400),  # bare LF
        (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # two spaces
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    ],
)
def test_bad_requests_are_answered_and_the_server_goes_on(
    server: ServerProcess, request_bytes: bytes, status: int
) -> None:
    reply, closed = exchange_and_close(server, request_bytes)
    assert reply.status == status and closed
    assert still_serving(server)


def test_a_bad_body_after_the_app_started_closes_only_that_connection(
    server: ServerProcess,
) -> None:
    with Wire(server) as wire:
        wire.send(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        time.sleep(0.1)  # the app is reading the body now
        wire.send(b"nonsense\r\n")
        reply = wire.reply()
        assert reply.status == 400 and wire.closed_by_server()
    assert still_serving(server)


def test_bad_websocket_frames_close_only_their_socket(server: ServerProcess) -> None:
    with open_ws(server) as good:
        bad = RawWebSocket(server)
        try:
            bad.send(Opcode.TEXT, b"x", mask=None)
            assert bad.frame()[0] == Opcode.CLOSE and bad.closed_by_server()
        finally:
            bad.close()
        good.send("unaffected")
        assert good.recv(timeout=10) == "unaffected"


def test_slowloris_gets_408_while_others_are_served(start_server: ServerPool) -> None:
    server = start_asgi(start_server, "--request-timeout", "1")
    with Wire(server) as slow:
        slow.send(b"GET /whoami HTTP/1.1\r\n")
        started = time.monotonic()
        reply = None
        for byte in b"Host: x\r\nX-Slow: " + b"a" * 200:
            try:
                slow.send(bytes([byte]))  # a byte every 50 ms: each resets no timer
            except OSError:
                break
            assert still_serving(server)
            time.sleep(0.05)
            if time.monotonic() - started > 3:
                break
        reply = slow.reply()
        assert reply.status == 408 and slow.closed_by_server()
    assert time.monotonic() - started >= 1  # not before its time (a lower bound only)


def test_a_body_that_stops_coming_gets_408(start_server: ServerPool) -> None:
    # The app waits in receive(); the client sent half its body and stalls.
    server = start_asgi(start_server, "--request-timeout", "1")
    with Wire(server) as wire:
        wire.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf.")
        started = time.monotonic()
        reply = wire.reply()
        assert reply.status == 408 and wire.closed_by_server()
    assert time.monotonic() - started >= 1
    assert still_serving(server)


def test_an_idle_keep_alive_connection_is_closed(start_server: ServerPool) -> None:
    server = start_asgi(start_server, "--idle-timeout", "0.5")
    with Wire(server) as wire:
        wire.send(get("/whoami"))
        assert wire.reply().status == 200
        assert wire.quiet_for(0.2)  # still open just after
        assert wire.closed_by_server(timeout=10)


def test_past_the_connection_cap_requests_get_503(start_server: ServerPool) -> None:
    server = start_asgi(start_server, "--max-connections", "3")
    held = [Wire(server) for _ in range(3)]
    try:
        held[0].send(get("/whoami"))
        assert held[0].reply().status == 200
        reply, closed = exchange_and_close(server, get("/whoami"))  # the fourth
        assert reply.status == 503 and reply.headers[b"retry-after"] == b"1" and closed
        held[1].send(get("/whoami"))  # the count is back to three
        assert held[1].reply().status == 200
    finally:
        for wire in held:
            wire.close()


# -- flow control ------------------------------------------------------------------------------
def test_an_app_that_does_not_receive_stops_the_reading(
    server: ServerProcess, gates: Gates
) -> None:
    """The body waits in the kernel's buffers, not in ours: the client blocks, and the
    server's memory does not grow by the body it was sent."""
    body_size = 12 * MiB
    before = rss(server)
    sock = socket.create_connection(server.address, timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    try:
        sock.sendall(
            b"POST /no-receive?token=nr HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
            % body_size
        )
        gates.wait("nr", "entered")
        sock.setblocking(False)
        sent, stalled_since = 0, time.monotonic()
        piece = b"x" * 65536
        while sent < body_size and time.monotonic() - stalled_since < 1.0:
            try:
                sent += sock.send(piece[: body_size - sent])
                stalled_since = time.monotonic()
            except BlockingIOError:
                time.sleep(0.01)
        assert sent < body_size / 2, f"the server took {sent} bytes of a body nobody reads"
        assert rss(server) - before < 4 * MiB
    finally:
        gates.release("nr")
        sock.close()
    assert still_serving(server)


def test_a_websocket_app_that_does_not_receive_stops_the_reading(
    server: ServerProcess, gates: Gates
) -> None:
    """Messages wait in the kernel's buffers, not in a queue of ours (at most HIGH_WATER)."""
    before = rss(server)
    raw = RawWebSocket(server, "/ws/deaf?token=wsdeaf")
    try:
        gates.wait("wsdeaf", "entered")
        raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        raw.sock.setblocking(False)
        stream = frame_bytes(Opcode.BINARY, b"m" * 65536, mask=b"abcd") * 192  # 12 MiB
        total, sent, stalled_since = len(stream), 0, time.monotonic()
        while sent < total and time.monotonic() - stalled_since < 1.0:
            try:
                sent += raw.sock.send(stream[sent : sent + 65536])
                stalled_since = time.monotonic()
            except BlockingIOError:
                time.sleep(0.01)
        assert sent < total / 2, f"the server took {sent} bytes of messages nobody receives"
        assert rss(server) - before < 4 * MiB
    finally:
        gates.release("wsdeaf")
        raw.close()
    assert still_serving(server)


def test_a_client_that_does_not_read_stalls_the_sender(server: ServerProcess, gates: Gates) -> None:
    """send() waits while the client does not read (drain): the app stops producing, and
    memory stays flat, instead of 64 MiB piling up in the transport's buffer."""
    before = rss(server)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.connect(server.address)
    try:
        sock.sendall(get("/stream?mb=64&token=nr2"))
        gates.wait("nr2", "progress")
        progress = -1
        while (now := int((gates.directory / "nr2.progress").read_text() or 0)) != progress:
            progress = now
            time.sleep(0.5)  # unchanged for half a second: stalled
        assert progress < 64 * 16 / 4, (
            f"{progress} pieces of 64 KiB went out to a client that reads nothing"
        )
        assert not gates.seen("nr2", "finished")
        assert rss(server) - before < 12 * MiB
    finally:
        sock.close()
    assert still_serving(server)
