"""The foundation end to end: the command line, the harness, the tracer, and the core on
real sockets with real clients (curl, httpx, raw bytes), via servers/wire.py."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys

import httpx
import pytest

from servers.eras import ERAS
from servers.launch import ServerProcess, ServerStartError

CORE_SERVER = [sys.executable, "-m", "servers.wire", "--port", "0"]


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def core_server() -> ServerProcess:
    with ServerProcess(CORE_SERVER, name="core-test") as server:
        yield server  # type: ignore[misc]
    assert server.returncode == 0, server.output()
    assert not server.group_pids()


# -- the command line --------------------------------------------------------------------
def test_list_names_every_era() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "servers", "list"], capture_output=True, text=True, check=True
    ).stdout
    for era in ERAS:
        assert era.name in out


@pytest.mark.parametrize("era", [e for e in ERAS if not e.built], ids=lambda e: e.name)
def test_unbuilt_era_says_so(era: object) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "servers", era.name],  # type: ignore[attr-defined]
        capture_output=True,
        text=True,
    )
    assert result.returncode == 3
    assert "not built yet" in result.stderr


def test_unknown_era_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "servers", "gopher"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "no era named 'gopher'" in result.stderr


# -- the harness ---------------------------------------------------------------------------
def test_harness_reports_a_server_that_dies() -> None:
    argv = [sys.executable, "-c", "import sys; print('cannot bind, sorry'); sys.exit(4)"]
    with pytest.raises(ServerStartError, match="cannot bind, sorry"):
        ServerProcess(argv, name="doomed", startup_timeout=5).start()


def test_harness_stops_the_whole_process_group() -> None:
    # A server that forks a child which ignores SIGTERM: stop() must still leave nothing.
    code = (
        "import os, signal, socket, time\n"
        "s = socket.create_server(('127.0.0.1', 0))\n"
        "if os.fork() == 0:\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "    time.sleep(60); os._exit(0)\n"
        "print(f'x ready on http://127.0.0.1:{s.getsockname()[1]}/', flush=True)\n"
        "time.sleep(60)\n"
    )
    server = ServerProcess([sys.executable, "-c", code], http_probe=None, stop_timeout=1)
    with server:
        assert len(server.group_pids()) == 2
    assert server.group_pids() == []


# -- the core on real sockets ---------------------------------------------------------------
def test_httpx_keep_alive(core_server: ServerProcess) -> None:
    with httpx.Client(base_url=core_server.url) as client:
        first = client.get("/a?x=1")
        second = client.post("/b", content=b"hello")
    assert first.text.startswith("GET /a?x=1 HTTP/1.1\nbody 0 bytes")
    assert "POST /b HTTP/1.1\nbody 5 bytes" in second.text
    assert first.headers["server"] == "gatewaylab/0.1"
    assert "date" in first.headers


def test_curl_chunked_upload_and_expect(core_server: ServerProcess) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed: sudo apt-get install curl")
    body = b"x" * 200_000
    result = subprocess.run(
        [
            curl,
            "-sS",
            "-H",
            "Transfer-Encoding: chunked",
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            "@-",
            core_server.url + "up",
        ],
        input=body,
        capture_output=True,
        check=True,
        timeout=30,
    )
    assert result.stdout.startswith(b"POST /up HTTP/1.1\nbody 200000 bytes")


def test_pipelined_requests_answered_in_order(core_server: ServerProcess) -> None:
    with socket.create_connection(core_server.address) as sock:
        sock.sendall(
            b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        data = recv_all(sock)
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert data.index(b"GET /1 ") < data.index(b"POST /2 ") < data.index(b"GET /3 ")
    assert b"Connection: close" in data.split(b"GET /3 ")[0].rsplit(b"HTTP/1.1 200", 1)[1]


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\nHost: x\n\n", b"400"),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked"
            b"\r\n\r\n0\r\n\r\n",
            b"400",
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000 + b"\r\n\r\n", b"431"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414"),
    ],
    ids=["bare-LF", "CL+TE", "huge-field", "huge-target"],
)
def test_bad_input_answered_and_server_goes_on(
    core_server: ServerProcess, request_bytes: bytes, status: bytes
) -> None:
    with socket.create_connection(core_server.address) as sock:
        sock.sendall(request_bytes)
        answer = recv_all(sock)  # the server closes after a protocol error
    assert answer.startswith(b"HTTP/1.1 " + status)
    assert b"Connection: close" in answer
    assert b"Traceback" not in answer
    assert httpx.get(core_server.url + "next").status_code == 200


def test_trace_shows_both_directions_with_connection_ids() -> None:
    with ServerProcess([*CORE_SERVER, "--trace"], name="core-test") as server:
        httpx.get(server.url + "traced")
        httpx.post(server.url + "big", content=b"z" * 5000)
        evil = httpx.get(server.url + "evil", headers={"X-Evil": "\x1b[31m"})
    out = server.output()
    assert "c2 < GET /traced HTTP/1.1" in out  # c1 was the harness's readiness probe
    assert "c2 > HTTP/1.1 200 OK" in out
    assert "<5000 bytes>" in out
    assert evil.status_code == 400  # ESC is a control byte: refused by the core
    assert "\x1b[31m" not in out  # client bytes are escaped, never echoed raw
    assert "\\x1b[31m" in out


def test_sigterm_exits_zero() -> None:
    server = ServerProcess(CORE_SERVER, name="core-test").start()
    try:
        server.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        assert server.proc.wait(10) == 0  # type: ignore[union-attr]
    finally:
        server.stop()
