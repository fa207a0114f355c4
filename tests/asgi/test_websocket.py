"""WebSockets end to end: the websockets library as the client, raw sockets for what a
good client never sends (unmasked frames, bad UTF-8, a Close without a code).

Each spec item has its test: the handshake (accept key, version 13 or 426, subprotocols,
403 for a close before accept, the denial extension), messages both ways (text, binary,
fragmented), Ping/Pong and our own keepalive pings, and the closing handshake with its
codes (1005 when none, never 1005/1006 on the wire, 1007, 1009, 1011).
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from servers.launch import ServerProcess
from servers.websocket import Opcode, frame_bytes
from tests.conftest import ServerPool
from tests.wsgi.support import Gates

from .conftest import start_asgi

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MASK = b"\x01\x02\x03\x04"


def ws_url(server: ServerProcess, path: str) -> str:
    return f"ws://{server.host}:{server.port}{path}"


def open_ws(server: ServerProcess, path: str = "/ws/echo", **kw: object) -> ClientConnection:
    return connect(ws_url(server, path), proxy=None, open_timeout=10, close_timeout=10, **kw)  # type: ignore[arg-type]


# -- a raw client ------------------------------------------------------------------------------
class RawWebSocket:
    """Handshake by hand, then frames exactly as the test writes them."""

    def __init__(self, server: ServerProcess, path: str = "/ws/echo", early: bytes = b"") -> None:
        self.sock = socket.create_connection(server.address, timeout=10)
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
            + early
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv()
        self.head, _, self.buf = self.buf.partition(b"\r\n\r\n")

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("closed")
        return data

    def send(
        self, opcode: int, payload: bytes, fin: bool = True, mask: bytes | None = MASK
    ) -> None:
        self.sock.sendall(frame_bytes(opcode, payload, fin=fin, mask=mask))

    def frame(self) -> tuple[int, bytes]:
        """The next frame from the server (never masked): (opcode, payload)."""
        while len(self.buf) < 2:
            self.buf += self._recv()
        length, start = self.buf[1] & 0x7F, 2
        if length == 126:
            while len(self.buf) < 4:
                self.buf += self._recv()
            length, start = struct.unpack("!H", self.buf[2:4])[0], 4
        assert self.buf[1] & 0x80 == 0, "a server frame must not be masked (RFC 6455 §5.1)"
        while len(self.buf) < start + length:
            self.buf += self._recv()
        opcode, payload = self.buf[0] & 0x0F, self.buf[start : start + length]
        self.buf = self.buf[start + length :]
        return opcode, payload

    def closed_by_server(self) -> bool:
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(server: ServerProcess) -> Iterator[RawWebSocket]:
    conn = RawWebSocket(server)
    yield conn
    conn.close()


def close_code(payload: bytes) -> int:
    return int.from_bytes(payload[:2], "big")


# -- the handshake -----------------------------------------------------------------------------
def test_the_handshake_answers_101_with_the_accept_key(raw: RawWebSocket) -> None:
    # RFC 6455 §1.3's sample key, so the accept value is the RFC's.
    assert raw.head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in raw.head
    assert b"x-accepted: yes" in raw.head  # websocket.accept "headers" (spec 2.1)


def test_the_websocket_scope(server: ServerProcess) -> None:
    with open_ws(server, "/ws/scope?x=1", subprotocols=["chat"]) as ws:
        scope = json.loads(ws.recv(timeout=10))
    assert scope["type"] == "websocket" and scope["scheme"] == "ws"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert (scope["path"], scope["query_string"]) == ("/ws/scope", {"bytes": "x=1"})
    assert scope["subprotocols"] == ["chat"]
    assert scope["extensions"] == {"websocket.http.response": {}}
    assert "method" not in scope and sorted(scope["state"]) == ["greeting", "shared"]


def test_subprotocol_chosen_by_the_app(server: ServerProcess) -> None:
    with open_ws(server, subprotocols=["chat", "superchat"]) as ws:
        assert ws.subprotocol == "superchat"


def test_close_before_accept_is_a_403(server: ServerProcess) -> None:
    with pytest.raises(InvalidStatus) as caught:
        open_ws(server, "/ws/refuse")
    assert caught.value.response.status_code == 403


def test_the_app_may_deny_with_its_own_http_response(server: ServerProcess) -> None:
    with pytest.raises(InvalidStatus) as caught:
        open_ws(server, "/ws/deny")
    response = caught.value.response
    assert (response.status_code, response.body) == (401, b"no entry\n")
    assert response.headers["x-denied"] == "yes"


@pytest.mark.parametrize("path", ["/ws/raise-before", "/ws/return-before"])
def test_an_app_that_neither_accepts_nor_closes_gets_a_500(
    server: ServerProcess, path: str
) -> None:
    with pytest.raises(InvalidStatus) as caught:
        open_ws(server, path)
    assert caught.value.response.status_code == 500


def test_other_versions_get_426_naming_13(server: ServerProcess) -> None:
    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": KEY}
    with httpx.Client(base_url=server.url, trust_env=False) as client:
        reply = client.get("/ws/echo", headers={**headers, "Sec-WebSocket-Version": "8"})
        assert reply.status_code == 426 and reply.headers["sec-websocket-version"] == "13"
        reply = client.get(
            "/ws/echo", headers={**headers, "Sec-WebSocket-Key": "x", "Sec-WebSocket-Version": "13"}
        )
        assert reply.status_code == 400 and "Sec-WebSocket-Key" in reply.text


# -- messages ----------------------------------------------------------------------------------
def test_text_binary_and_empty_messages_echo(server: ServerProcess) -> None:
    with open_ws(server) as ws:
        for message in ("héllo", b"\x00\xffbytes", "", b"", "x" * 70000):
            ws.send(message)
            assert ws.recv(timeout=10) == message


def test_fragmented_messages_arrive_whole(server: ServerProcess) -> None:
    with open_ws(server) as ws:
        ws.send(["frag", "mented ", "☃"])  # websockets sends an iterable as fragments
        assert ws.recv(timeout=10) == "fragmented ☃"
        ws.send([b"a", b"b", b"c"])
        assert ws.recv(timeout=10) == b"abc"


def test_frames_sent_before_the_101_are_not_lost(server: ServerProcess) -> None:
    raw = RawWebSocket(server, early=frame_bytes(Opcode.TEXT, b"eager", mask=MASK))
    try:
        assert raw.frame() == (Opcode.TEXT, b"eager")
    finally:
        raw.close()


def test_a_ping_is_answered_with_a_pong(server: ServerProcess, raw: RawWebSocket) -> None:
    raw.send(Opcode.PING, b"payload")
    assert raw.frame() == (Opcode.PONG, b"payload")  # §5.5.2: the same payload
    with open_ws(server) as ws:
        assert ws.ping(b"x").wait(timeout=10)


# -- closing -----------------------------------------------------------------------------------
def test_the_client_closes_with_a_code_and_the_app_hears_it(
    server: ServerProcess, gates: Gates
) -> None:
    with open_ws(server, "/ws/echo?token=c1") as ws:
        ws.close(4000, "bye now")
    gates.wait("c1", "disconnect")
    heard = json.loads((gates.directory / "c1.disconnect").read_text())
    assert heard == {"type": "websocket.disconnect", "code": 4000, "reason": "bye now"}
    gates.wait("c1", "send-raised")  # spec 2.4: send() after the close raises an OSError
    assert (gates.directory / "c1.send-raised").read_text() == "ClientDisconnected"


def test_a_close_without_a_code_is_1005_and_echoed_without_one(
    server: ServerProcess, gates: Gates
) -> None:
    raw = RawWebSocket(server, "/ws/echo?token=c2")
    try:
        raw.send(Opcode.CLOSE, b"")
        assert raw.frame() == (Opcode.CLOSE, b"")  # echoed without a code: 1005 is never sent
        assert raw.closed_by_server()  # §7.1.1: the server closes TCP first
    finally:
        raw.close()
    gates.wait("c2", "disconnect")
    assert json.loads((gates.directory / "c2.disconnect").read_text())["code"] == 1005


def test_the_app_closes_with_a_code_and_a_reason(server: ServerProcess, gates: Gates) -> None:
    with (
        open_ws(server, "/ws/close?code=4001&reason=done&token=c3") as ws,
        pytest.raises(ConnectionClosed) as caught,
    ):
        ws.recv(timeout=10)
    assert caught.value.rcvd is not None
    assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (4001, "done")
    gates.wait("c3", "disconnect")  # after the client's answering Close
    assert json.loads((gates.directory / "c3.disconnect").read_text())["code"] == 4001


@pytest.mark.parametrize(("path", "code"), [("/ws/return-after", 1000), ("/ws/raise-after", 1011)])
def test_the_socket_closes_when_the_app_ends(server: ServerProcess, path: str, code: int) -> None:
    since = server.output_size()
    with open_ws(server, path) as ws, pytest.raises(ConnectionClosed) as caught:
        ws.recv(timeout=10)
    assert caught.value.rcvd is not None and caught.value.rcvd.code == code
    if code == 1011:
        deadline = time.monotonic() + 10
        while b"boom after accept" not in server.output_bytes(since):
            assert time.monotonic() < deadline
            time.sleep(0.02)


def test_invalid_utf8_is_closed_with_1007(raw: RawWebSocket) -> None:
    raw.send(Opcode.TEXT, b"bad \xff byte")
    opcode, payload = raw.frame()
    assert (opcode, close_code(payload)) == (Opcode.CLOSE, 1007)
    assert raw.closed_by_server()


def test_an_unmasked_frame_is_closed_with_1002(raw: RawWebSocket) -> None:
    raw.send(Opcode.TEXT, b"naked", mask=None)
    opcode, payload = raw.frame()
    assert (opcode, close_code(payload)) == (Opcode.CLOSE, 1002)
    assert b"unmasked" in payload


def test_a_message_over_the_limit_is_closed_with_1009(start_server: ServerPool) -> None:
    server = start_asgi(start_server, "--ws-max-size", "1000")
    with open_ws(server) as ws:
        ws.send("x" * 1000)
        assert ws.recv(timeout=10) == "x" * 1000  # exactly the limit is fine
        ws.send("x" * 1001)
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv(timeout=10)
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 1009


# -- keepalive pings ---------------------------------------------------------------------------
def test_the_server_pings_and_drops_a_peer_that_never_answers(
    start_server: ServerPool, gates: Gates
) -> None:
    server = start_asgi(
        start_server, "--ws-ping-interval", "0.2", "--ws-ping-timeout", "0.6", gates=gates
    )
    # A live client (websockets answers pings by itself) stays up across several pings.
    with open_ws(server) as ws:
        time.sleep(1.5)
        ws.send("still here")
        assert ws.recv(timeout=10) == "still here"
    # A dead one (we read, never answer) is pinged, then dropped; its app hears 1006.
    raw = RawWebSocket(server, "/ws/echo?token=dead")
    try:
        opcode, payload = raw.frame()
        assert opcode == Opcode.PING and len(payload) == 4
        gates.wait("dead", "disconnect", timeout=10)
    finally:
        raw.close()
    heard = json.loads((gates.directory / "dead.disconnect").read_text())
    assert heard["code"] == 1006 and "ping timeout" in heard["reason"]
