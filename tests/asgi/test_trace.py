"""--trace: the wire and every ASGI message in both directions, with the task that ran it."""

from __future__ import annotations

import re

import httpx

from tests.conftest import ServerPool
from tests.wsgi.support import wait_for_output

from .conftest import start_asgi
from .test_websocket import open_ws


def test_trace_shows_the_wire_and_every_message_with_its_task(start_server: ServerPool) -> None:
    server = start_asgi(start_server, "--trace", app="apps.asgi:app")
    since = server.output_size()
    with httpx.Client(base_url=server.url, trust_env=False) as client:
        assert client.post("/echo", content=b"x" * 100).status_code == 200
    log = wait_for_output(server, "http.response.body", since)
    # The bytes: head lines one by one, bodies by size.
    assert re.search(r"c\d+ < POST /echo HTTP/1.1", log)
    assert re.search(r"c\d+ > HTTP/1.1 200 OK", log)
    # The interface, both ways, each line naming the task: "[asgi Task-N]".
    assert re.search(r"< \[asgi Task-\d+\] scope type='http' .*method='POST'", log)
    assert re.search(
        r"< \[asgi Task-\d+\] type='http.request' body=<100 bytes> more_body=False", log
    )
    assert re.search(r"> \[asgi Task-\d+\] type='http.response.start' status=200", log)
    assert re.search(r"> \[asgi Task-\d+\] type='http.response.body' body=<100 bytes>", log)


def test_trace_shows_websocket_frames_and_messages(start_server: ServerPool) -> None:
    server = start_asgi(start_server, "--trace", app="apps.asgi:app")
    since = server.output_size()
    with open_ws(server, "/ws") as ws:
        ws.send("hello")
        assert ws.recv(timeout=10) == "hello"
    log = wait_for_output(server, "websocket.disconnect", since)
    assert re.search(r"< \[asgi Task-\d+\] type='websocket.connect'", log)
    assert re.search(r"> \[asgi Task-\d+\] type='websocket.accept'", log)
    assert re.search(r"< \[ws\] TextMessage\(data='hello'\)", log)
    assert re.search(r"< \[asgi Task-\d+\] type='websocket.receive' text='hello'", log)
