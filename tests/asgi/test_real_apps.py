"""Real apps and real clients: Starlette unmodified (HTTP, streaming, WebSocket, lifespan),
the WSGI family through the thread-pool adapter, and httpx's async client."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import httpx
import pytest

from servers.launch import ServerProcess
from tests.conftest import ServerPool

from .conftest import start_asgi
from .test_websocket import open_ws


@pytest.fixture(scope="module")
def starlette_server() -> ServerProcess:
    pool = ServerPool()
    try:
        yield start_asgi(pool, "--lifespan", "on", app="tests.asgi.starlette_app:app")  # type: ignore[misc]
    finally:
        pool.stop_all()


def test_starlette_routes(starlette_server: ServerProcess) -> None:
    with httpx.Client(base_url=starlette_server.url, trust_env=False) as client:
        assert client.get("/").text == "Hello from Starlette\n"
        reply = client.post("/items/7?q=x", json={"a": [1, 2]})
        assert reply.json() == {"path": "/items/7", "query": {"q": "x"}, "body": {"a": [1, 2]}}
        assert client.get("/nowhere").status_code == 404


def test_starlette_lifespan_state_reaches_requests(starlette_server: ServerProcess) -> None:
    with httpx.Client(base_url=starlette_server.url, trust_env=False) as client:
        first = client.get("/state").json()
        second = client.get("/state").json()
    # The state dict is copied per request, the list inside it is shared (shallow copy).
    assert first["started_by"] == "lifespan" and second["visits"] == first["visits"] + 1


def test_starlette_streaming_response(starlette_server: ServerProcess) -> None:
    with (
        httpx.Client(base_url=starlette_server.url, trust_env=False) as client,
        client.stream("GET", "/numbers") as reply,
    ):
        assert reply.headers["transfer-encoding"] == "chunked"
        assert list(reply.iter_lines()) == ["line 1", "line 2", "line 3"]


def test_starlette_websocket(starlette_server: ServerProcess) -> None:
    with open_ws(starlette_server, "/ws") as ws:
        ws.send("hi")
        assert ws.recv(timeout=10) == "starlette heard: hi"


def test_httpx_async_many_at_once(starlette_server: ServerProcess) -> None:
    async def main() -> list[str]:
        async with httpx.AsyncClient(base_url=starlette_server.url, trust_env=False) as client:
            replies = await asyncio.gather(*(client.get("/") for _ in range(50)))
        return [reply.text for reply in replies]

    assert asyncio.run(main()) == ["Hello from Starlette\n"] * 50


# -- the WSGI family on the ASGI server --------------------------------------------------------
def test_the_wsgi_family_runs_on_the_thread_pool_adapter(start_server: ServerPool) -> None:
    server = start_asgi(start_server, app="apps.wsgi:app")
    body = bytes(range(256)) * 4096
    with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
        assert client.get("/hello").content == b"Hello, world!\n"
        assert client.get("/echo?x=1").content == b"x=1"
        reply = client.post("/upload", content=iter([body[:1000], body[1000:]]))  # chunked
        assert reply.json() == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        assert (
            client.get("/stream?chunks=3&delay_ms=0").text
            == "chunk 1 of 3\nchunk 2 of 3\nchunk 3 of 3\n"
        )
        who = json.loads(client.get("/whoami").content)
        # A WSGI app runs on a pool thread, not on the loop (and a handshake reaches it as
        # the plain GET it is: the family's WSGI answer to /ws is 501).
        assert who["thread"].startswith("asgi-wsgi") and who["task"] is None
        headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "x"}
        assert client.get("/ws", headers=headers).status_code == 501
        environ = client.get("/env").json()
        assert environ["wsgi.input_terminated"] is True and environ["SERVER_PROTOCOL"] == "HTTP/1.1"


def test_the_uvloop_loop_serves_the_same(start_server: ServerPool, tmp_path: Path) -> None:
    server = start_asgi(start_server, "--loop", "uvloop")
    path = tmp_path / "f.bin"
    path.write_bytes(b"z" * 300_000)
    with httpx.Client(base_url=server.url, trust_env=False) as client:
        assert client.get("/echo", params={"a": "b"}).status_code == 200
        assert client.post("/echo", content=b"q" * 100_000).content == b"q" * 100_000
        assert client.get("/pathsend", params={"path": str(path)}).content == path.read_bytes()
    with open_ws(server) as ws:
        ws.send("on uvloop")
        assert ws.recv(timeout=10) == "on uvloop"
