"""What the WSGI tests share: the server under test, a raw client read by h11, and gates.

Raw sockets wherever the bytes are the point (when the head goes out, a 100 Continue, a
body cut short, pipelining), with h11 as the reference parser of the answers: it reads
them as strictly as a careful client would, so a framing mistake of ours fails the test
instead of being smoothed over. httpx is used where only the meaning matters.
"""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import h11
import httpx

from servers.launch import ServerProcess, our_server_argv
from tests.conftest import ServerPool

PROBE = "tests.wsgi.apps:probe"


def start_wsgi(
    pool: ServerPool, *options: str, app: str = PROBE, gates: Gates | None = None
) -> ServerProcess:
    """Our server on a free port, serving ``app`` (default: the probe apps)."""
    env = gates.env if gates is not None else None
    return pool(our_server_argv("wsgi", "--app", app, *options), env=env, name="wsgi")


def client(server: ServerProcess, timeout: float = 10) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=timeout, trust_env=False)


# -- gates: where the app is, seen from the test (see tests/wsgi/apps.py) ----------------------
class Gates:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def env(self) -> dict[str, str]:
        return {"GATEWAYLAB_PROBE_DIR": str(self.directory)}

    def seen(self, token: str, what: str) -> bool:
        return (self.directory / f"{token}.{what}").exists()

    def wait(self, token: str, what: str = "entered", timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not self.seen(token, what):
            assert time.monotonic() < deadline, f"the app never marked {token}.{what}"
            time.sleep(0.01)

    def release(self, token: str) -> None:
        (self.directory / f"{token}.release").touch()


# -- a raw client --------------------------------------------------------------------------------
@dataclass
class Reply:
    status: int = 0
    headers: dict[bytes, bytes] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    complete: bool = False  # False: the server closed before the framing said it was done
    interim: list[int] = field(default_factory=list)  # 1xx statuses, in order


class Wire:
    """One client connection: bytes go out exactly as the test wrote them."""

    def __init__(self, server: ServerProcess, timeout: float = 10) -> None:
        self.sock = socket.create_connection(server.address, timeout=timeout)
        self.parser = h11.Connection(h11.CLIENT)

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self, method: str = "GET") -> Reply:
        """Read the next response. h11 is told that a request went out (it needs the
        method: the answer to HEAD has no body), but its bytes are not the ones sent."""
        parser = self.parser
        if parser.our_state is h11.DONE and parser.their_state is h11.DONE:
            parser.start_next_cycle()
        parser.send(h11.Request(method=method, target="/", headers=[("Host", "test")]))
        parser.send(h11.EndOfMessage())
        reply = Reply()
        while True:
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError:
                return reply  # the body ended early: complete stays False
            if event is h11.NEED_DATA:
                parser.receive_data(self._recv())
            elif isinstance(event, h11.InformationalResponse):
                reply.interim.append(event.status_code)
            elif isinstance(event, h11.Response):
                reply.status = event.status_code
                for name, value in event.headers:
                    old = reply.headers.get(name)
                    reply.headers[name] = value if old is None else old + b", " + value
            elif isinstance(event, h11.Data):
                reply.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                reply.complete = True
                return reply
            else:  # ConnectionClosed before any response
                return reply

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except ConnectionResetError:
            return b""

    def interim(self) -> bytes:
        """The bytes of an interim answer (``HTTP/1.1 100 Continue``), read raw."""
        data = b""
        while not data.endswith(b"\r\n\r\n"):
            piece = self.sock.recv(1)
            assert piece, f"closed after {data!r}"
            data += piece
        self.parser.receive_data(data)  # keep h11 in step: it will see the final answer
        return data

    def quiet_for(self, seconds: float) -> bool:
        """True if nothing arrives for ``seconds`` (and the connection is still open)."""
        self.sock.settimeout(seconds)
        try:
            self.sock.recv(1, socket.MSG_PEEK)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(10)
        return False  # bytes arrived, or the server closed

    def closed_by_server(self, timeout: float = 10) -> bool:
        """True if the server closes (EOF or reset) within ``timeout``, unread bytes aside."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not self.sock.recv(65536):
                    return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        return False


def exchange(server: ServerProcess, data: bytes, method: str = "GET") -> Reply:
    """Send ``data`` on a new connection and read one reply."""
    with Wire(server) as wire:
        wire.send(data)
        return wire.reply(method)


def exchange_and_close(
    server: ServerProcess, data: bytes, method: str = "GET"
) -> tuple[Reply, bool]:
    """The reply, and whether the server closed the connection after it."""
    with Wire(server) as wire:
        wire.send(data)
        reply = wire.reply(method)
        return reply, wire.closed_by_server(timeout=5)


def get(path: str, *headers: str, version: str = "1.1") -> bytes:
    lines = [f"GET {path} HTTP/{version}", "Host: test", *headers, "", ""]
    return "\r\n".join(lines).encode("latin-1")


def post(path: str, body: bytes, *headers: str, chunked: bool = False) -> bytes:
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
    lines = [f"POST {path} HTTP/1.1", "Host: test", framing, *headers, "", ""]
    return "\r\n".join(lines).encode("latin-1") + (chunk(body) if chunked else body)


def chunk(body: bytes, size: int = 7) -> bytes:
    """``body`` in chunked transfer coding, ``size`` bytes a chunk, with the last chunk."""
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def wait_for_output(server: ServerProcess, needle: str, since: int = 0, timeout: float = 10) -> str:
    """The server's output from byte ``since`` on, once it contains ``needle`` (a log line
    may land a moment after the reply it belongs to)."""
    deadline = time.monotonic() + timeout
    while needle not in (text := server.output_bytes(since).decode("utf-8", "replace")):
        assert time.monotonic() < deadline, f"{needle!r} never appeared in:\n{text[-3000:]}"
        time.sleep(0.02)
    return text
