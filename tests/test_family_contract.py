"""The family contract (apps/README.md), checked over the network against every host.

Each test runs once per host of ``family_server`` (every built era, plus waitress serving
``apps.wsgi:app`` and uvicorn serving ``apps.asgi:app``). Deterministic bodies are compared
twice: with the bytes spelled out below, which are the contract, and with the builders of
``apps/family.py``, which every flavour uses. If either comparison fails, an era drifted.

Timing is only ever asserted from below (``/sleep`` takes *at least* N ms): upper bounds
measure the machine, not the server.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from apps import family
from tests.conftest import FamilyHost, ServerPool

# -- the contract, spelled out --------------------------------------------------------------
TEXT = "text/plain; charset=utf-8"
HELLO = b"Hello, world!\n"
NOT_FOUND = (
    b"Not found: the family's routes are /hello, /echo, /env, /whoami, /sleep, /cpu, /stream,"
    b" /events, /upload, /page, /ws and /chat.\n"
)
NOT_ALLOWED = {
    "/hello": b"Method not allowed: /hello accepts GET, HEAD.\n",
    "/echo": b"Method not allowed: /echo accepts GET, HEAD, POST.\n",
    "/page": b"Method not allowed: /page accepts GET, HEAD.\n",
    "/upload": b"Method not allowed: /upload accepts POST.\n",
    "/events": b"Method not allowed: /events accepts GET, HEAD.\n",
    "/chat": b"Method not allowed: /chat accepts GET, HEAD.\n",
}
BAD_PARAMETER = {
    "ms": b"Bad parameter: ms must be one integer from 0 to 60000 (default 100).\n",
    "n": b"Bad parameter: n must be one integer from 0 to 10000000 (default 100000).\n",
    "chunks": b"Bad parameter: chunks must be one integer from 1 to 1000 (default 5).\n",
    "delay_ms": b"Bad parameter: delay_ms must be one integer from 0 to 10000 (default 100).\n",
    "count": b"Bad parameter: count must be one integer from 1 to 1000 (default 5).\n",
    # The same name as /stream's, with /events' own default.
    "events delay_ms": (
        b"Bad parameter: delay_ms must be one integer from 0 to 10000 (default 1000).\n"
    ),
}
TOO_LARGE = (
    b"Content too large: /echo holds the body in memory, so it takes at most 1048576 bytes;"
    b" /upload takes any size.\n"
)
UPGRADE_REQUIRED = b"Upgrade required: /ws is a WebSocket echo; open it with a WebSocket client.\n"
WS_UNSUPPORTED = (
    b"Not implemented: this interface cannot hand a live two-way connection to the"
    b" application, so /ws is served only over ASGI (run the asgi era).\n"
)
# /cpu: x = (1664525 * x + 1013904223) mod 2**32, n steps from x = 0.
CPU_RESULTS = {0: 0, 1: 1013904223, 2: 1196435762, 3: 3519870697, 100_000: 180235552}
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
# Deterministic GET requests and their exact bodies (the page is checked on its own).
DETERMINISTIC_GETS = {
    "/hello": HELLO,
    "/echo?say=hi&x=%20+1": b"say=hi&x=%20+1",
    "/sleep?ms=0": b"slept 0 ms\n",
    "/cpu?n=3": b"cpu n=3 result=3519870697\n",
    "/stream?chunks=2&delay_ms=0": b"chunk 1 of 2\nchunk 2 of 2\n",
}
EVENT_STREAM = "text/event-stream"
# /events, kept apart from DETERMINISTIC_GETS because, like /stream, it has no Content-Length.
EVENTS_GETS = {
    "/events?count=2&delay_ms=0": b"id: 1\ndata: event 1 of 2\n\nid: 2\ndata: event 2 of 2\n\n",
    "/events?delay_ms=0": b"".join(
        f"id: {i}\ndata: event {i} of 5\n\n".encode() for i in range(1, 6)
    ),
}


@pytest.fixture
def client(family_server: FamilyHost) -> Iterator[httpx.Client]:
    # trust_env=False: a proxy from the environment must not stand between us and the host.
    with httpx.Client(base_url=family_server.url, timeout=30, trust_env=False) as http:
        yield http


def assert_text(reply: httpx.Response, status: int, body: bytes) -> None:
    assert (reply.status_code, reply.content) == (status, body)
    assert reply.headers["content-type"] == TEXT
    assert reply.headers["content-length"] == str(len(body))


# -- /hello and HEAD ------------------------------------------------------------------------
def test_hello_is_the_same_bytes_everywhere(client: httpx.Client) -> None:
    reply = client.get("/hello")
    assert_text(reply, 200, HELLO)
    assert reply.content == family.HELLO_BODY


@pytest.mark.parametrize("target", [*DETERMINISTIC_GETS, *EVENTS_GETS, "/page", "/chat"])
def test_deterministic_get_routes(client: httpx.Client, target: str) -> None:
    reply = client.get(target)
    assert reply.status_code == 200
    if target == "/page":
        assert reply.content == family.render_page()
    elif target == "/chat":
        assert reply.content == family.render_chat_page()
    else:
        assert reply.content == {**DETERMINISTIC_GETS, **EVENTS_GETS}[target]


@pytest.mark.parametrize(
    "target", [*DETERMINISTIC_GETS, *EVENTS_GETS, "/page", "/chat", "/whoami", "/env"]
)
def test_head_answers_gets_headers_without_a_body(client: httpx.Client, target: str) -> None:
    get, head = client.get(target), client.head(target)
    assert head.status_code == get.status_code == 200
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.content == b""
    if target in DETERMINISTIC_GETS and "content-length" in get.headers:
        # RFC 9110 §8.6: a HEAD's Content-Length, if sent, is the one GET would send.
        assert (
            head.headers.get("content-length", get.headers["content-length"])
            == (get.headers["content-length"])
        )


# -- /echo ----------------------------------------------------------------------------------
def test_echo_get_sends_the_raw_query_string_back(client: httpx.Client) -> None:
    assert_text(client.get("/echo?a=1&b=%2F%20+c&a=2"), 200, b"a=1&b=%2F%20+c&a=2")
    assert_text(client.get("/echo"), 200, b"")


def test_echo_post_sends_the_body_back_with_its_content_type(client: httpx.Client) -> None:
    body = bytes(range(256)) * 4
    reply = client.post("/echo", content=body, headers={"Content-Type": "image/x-test; q=1"})
    assert (reply.status_code, reply.content) == (200, body)
    assert reply.headers["content-type"] == "image/x-test; q=1"
    assert reply.headers["content-length"] == str(len(body))


def test_echo_post_without_content_type_is_octets(client: httpx.Client) -> None:
    reply = client.post("/echo", content=b"no label")
    assert (reply.status_code, reply.content) == (200, b"no label")
    assert reply.headers["content-type"] == "application/octet-stream"


def test_echo_refuses_more_than_a_mebibyte(client: httpx.Client) -> None:
    assert client.post("/echo", content=b"x" * 1048576).content == b"x" * 1048576
    assert_text(client.post("/echo", content=b"x" * 1048577), 413, TOO_LARGE)
    assert family.content_too_large().body == TOO_LARGE


# -- /env and /whoami -----------------------------------------------------------------------
def test_env_shows_what_the_app_received(client: httpx.Client) -> None:
    reply = client.get("/env?probe=1", headers={"X-Gatewaylab-Probe": "seen-by-the-app"})
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    received = reply.json()
    assert isinstance(received, dict)
    # Each interface spells it its own way (HTTP_X_GATEWAYLAB_PROBE, or a headers list),
    # but the header, the path and the query string reach the app under every one.
    text = json.dumps(received).lower()
    assert "x_gatewaylab_probe" in text or "x-gatewaylab-probe" in text
    assert "seen-by-the-app" in text
    assert '"/env"' in text
    assert '"probe=1"' in text


def test_whoami_names_the_era_process_thread_and_task(
    client: httpx.Client, family_server: FamilyHost
) -> None:
    reply = client.get("/whoami")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    report = reply.json()
    assert set(report) == {"era", "pid", "thread", "task"}
    assert report["era"] == family_server.era
    if family_server.era == "cgi":
        # A process per request: each answer comes from a new script, already gone.
        again = client.get("/whoami").json()
        assert report["pid"] != again["pid"]
        assert family_server.server.pid not in (report["pid"], again["pid"])
    else:
        assert report["pid"] in family_server.server.group_pids()
    assert isinstance(report["thread"], str) and report["thread"]
    if family_server.asgi:
        assert isinstance(report["task"], str) and report["task"]
    else:
        assert report["task"] is None
    # Canonical serialization: what json.dumps(sort_keys, compact) would write, plus "\n".
    assert reply.content == family.canonical_json(report)


# -- /sleep, /cpu ---------------------------------------------------------------------------
@pytest.mark.parametrize(("query", "ms"), [("", 100), ("?ms=250", 250)])
def test_sleep_waits_at_least_the_time_asked(client: httpx.Client, query: str, ms: int) -> None:
    started = time.monotonic()
    reply = client.get("/sleep" + query)
    elapsed = time.monotonic() - started
    assert_text(reply, 200, f"slept {ms} ms\n".encode())
    assert elapsed >= ms / 1000


@pytest.mark.parametrize("n", sorted(CPU_RESULTS))
def test_cpu_result_is_the_lcg_after_n_steps(client: httpx.Client, n: int) -> None:
    reply = client.get("/cpu" if n == 100_000 else f"/cpu?n={n}")  # 100000 is the default
    body = f"cpu n={n} result={CPU_RESULTS[n]}\n".encode()
    assert_text(reply, 200, body)
    assert body == family.cpu_text(n, family.cpu_work(n))


# -- /stream --------------------------------------------------------------------------------
def test_stream_arrives_in_pieces_without_content_length(client: httpx.Client) -> None:
    pieces: list[bytes] = []
    with client.stream("GET", "/stream?chunks=3&delay_ms=200") as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"] == TEXT
        assert "content-length" not in reply.headers
        assert reply.headers["transfer-encoding"] == "chunked"  # the server framed it
        pieces.extend(reply.iter_raw())
    # 200 ms between lines: the first line was read before the last was written.
    assert len(pieces) > 1
    assert b"".join(pieces) == b"chunk 1 of 3\nchunk 2 of 3\nchunk 3 of 3\n"


def test_stream_defaults_to_five_lines(client: httpx.Client) -> None:
    reply = client.get("/stream")
    assert reply.status_code == 200
    expected = b"".join(f"chunk {i} of 5\n".encode() for i in range(1, 6))
    assert reply.content == expected == b"".join(family.stream(b"").chunks)


def test_head_stream_sends_headers_only(client: httpx.Client) -> None:
    reply = client.head("/stream?chunks=3&delay_ms=0")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == TEXT
    assert reply.content == b""


# -- /events --------------------------------------------------------------------------------
def test_events_arrive_one_at_a_time_as_an_event_stream(client: httpx.Client) -> None:
    pieces: list[bytes] = []
    with client.stream("GET", "/events?count=3&delay_ms=200") as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"] == EVENT_STREAM
        assert reply.headers["cache-control"] == "no-cache"
        assert "content-length" not in reply.headers
        assert reply.headers["transfer-encoding"] == "chunked"
        pieces.extend(reply.iter_raw())
    assert len(pieces) > 1  # 200 ms apart: not one piece at the end
    assert b"".join(pieces) == b"".join(
        f"id: {i}\ndata: event {i} of 3\n\n".encode() for i in (1, 2, 3)
    )
    assert b"".join(pieces) == b"".join(family.events(b"count=3").chunks)


def test_head_events_sends_headers_only(client: httpx.Client) -> None:
    reply = client.head("/events?count=3")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == EVENT_STREAM
    assert reply.headers["cache-control"] == "no-cache"
    assert reply.content == b""


# -- /upload --------------------------------------------------------------------------------
def _pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_upload_reports_size_and_sha256_of_megabytes(client: httpx.Client, framing: str) -> None:
    data = hashlib.sha256(b"seed").digest() * (4 * 1024 * 1024 // 32)  # 4 MiB
    # httpx sends bytes with Content-Length, an iterator with chunked transfer coding.
    content = data if framing == "content-length" else _pieces(data, 100_000)
    reply = client.post("/upload", content=content)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    sha = hashlib.sha256(data).hexdigest()
    assert reply.content == b'{"bytes":4194304,"sha256":"' + sha.encode() + b'"}\n'
    assert reply.content == family.upload_json(len(data), sha)


def test_upload_of_nothing(client: httpx.Client) -> None:
    reply = client.post("/upload", content=b"")
    assert reply.content == b'{"bytes":0,"sha256":"' + EMPTY_SHA256.encode() + b'"}\n'


# -- /page ----------------------------------------------------------------------------------
def test_page_is_the_rendered_template(client: httpx.Client) -> None:
    reply = client.get("/page")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    assert reply.headers["content-length"] == str(len(reply.content))
    assert reply.content == family.render_page()
    assert reply.content.startswith(b"<!doctype html>\n")
    assert b"/stream?chunks=5&amp;delay_ms=100" in reply.content  # autoescaped


# -- /chat ----------------------------------------------------------------------------------
def test_chat_page_is_the_rendered_template(client: httpx.Client) -> None:
    reply = client.get("/chat")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    assert reply.headers["content-length"] == str(len(reply.content))
    assert reply.content == family.render_chat_page()
    assert reply.content.startswith(b"<!doctype html>\n")
    # Self-contained: nothing loaded from anywhere else.
    for outside in (b"src=", b"href=", b"url(", b"@import"):
        assert outside not in reply.content
    assert b"new WebSocket(" in reply.content


def test_chat_room_broadcasts_or_the_page_answers(family_server: FamilyHost) -> None:
    url = family_server.ws_url + "chat"
    if not family_server.websockets:
        # No room here: the handshake gets the page again, and a 200 is no 101.
        with pytest.raises(InvalidStatus) as refused:
            connect(url, proxy=None, open_timeout=10)
        assert refused.value.response.status_code == 200
        assert refused.value.response.body == family.render_chat_page()
        return
    with connect(url, proxy=None, open_timeout=10) as a:
        me = json.loads(a.recv(timeout=10))  # the first event is one's own join
        assert me["event"] == "join"
        with connect(url, proxy=None, open_timeout=10) as b:
            you = json.loads(b.recv(timeout=10))
            assert you["event"] == "join" and you["member"] != me["member"]
            assert json.loads(a.recv(timeout=10)) == you  # a heard b come in
            b.send("héllo, room")
            said = {"event": "say", "member": you["member"], "text": "héllo, room"}
            assert json.loads(a.recv(timeout=10)) == said
            assert json.loads(b.recv(timeout=10)) == said  # the sender hears it too
        left = json.loads(a.recv(timeout=10))
        assert (left["event"], left["member"]) == ("leave", you["member"])


# -- refusals -------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/", "/nope", "/hello/", "/HELLO", "/hello%3F"])
def test_unknown_paths_are_404(client: httpx.Client, path: str) -> None:
    assert_text(client.get(path), 404, NOT_FOUND)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/hello", "GET, HEAD"),
        ("POST", "/page", "GET, HEAD"),
        ("PUT", "/echo", "GET, HEAD, POST"),
        ("GET", "/upload", "POST"),
        ("DELETE", "/events", "GET, HEAD"),
        ("POST", "/chat", "GET, HEAD"),
    ],
)
def test_wrong_methods_are_405_with_allow(
    client: httpx.Client, method: str, path: str, allow: str
) -> None:
    reply = client.request(method, path)
    assert_text(reply, 405, NOT_ALLOWED[path])
    assert reply.headers["allow"] == allow


@pytest.mark.parametrize(
    ("target", "param"),
    [
        ("/sleep?ms=abc", "ms"),
        ("/sleep?ms=", "ms"),
        ("/sleep?ms=-1", "ms"),
        ("/sleep?ms=60001", "ms"),
        ("/sleep?ms=%2B1", "ms"),  # "+1": only digits and a minus sign make an integer
        ("/sleep?ms=1&ms=2", "ms"),
        ("/cpu?n=1.5", "n"),
        ("/cpu?n=%D9%A1", "n"),  # ARABIC-INDIC DIGIT ONE: int() would take it, we do not
        ("/cpu?n=10000001", "n"),
        ("/cpu?n=" + "9" * 5000, "n"),
        ("/stream?chunks=0", "chunks"),
        ("/stream?chunks=2&delay_ms=10001", "delay_ms"),
        ("/events?count=0", "count"),
        ("/events?count=1001", "count"),
        ("/events?count=1&count=1", "count"),
        ("/events?delay_ms=10001", "events delay_ms"),
        ("/events?count=2&delay_ms=-1", "events delay_ms"),
    ],
)
def test_bad_parameters_are_400_naming_bounds(
    client: httpx.Client, target: str, param: str
) -> None:
    assert_text(client.get(target), 400, BAD_PARAMETER[param])


# -- /ws ------------------------------------------------------------------------------------
def test_ws_over_plain_http_says_why_not(client: httpx.Client, family_server: FamilyHost) -> None:
    reply = client.get("/ws")
    if family_server.websockets:
        assert_text(reply, 426, UPGRADE_REQUIRED)
        assert reply.headers["upgrade"] == "websocket"
    else:
        assert_text(reply, 501, WS_UNSUPPORTED)


def test_ws_echoes_text_and_bytes(family_server: FamilyHost) -> None:
    url = family_server.ws_url + "ws"
    if not family_server.websockets:
        with pytest.raises(InvalidStatus) as refused:
            connect(url, proxy=None, open_timeout=10)
        assert refused.value.response.status_code == 501
        assert refused.value.response.body == WS_UNSUPPORTED
        return
    with connect(url, proxy=None, open_timeout=10) as ws:
        ws.send("héllo")
        assert ws.recv(timeout=10) == "héllo"
        ws.send(b"\x00\xffbytes")
        assert ws.recv(timeout=10) == b"\x00\xffbytes"
        ws.send("")
        assert ws.recv(timeout=10) == ""


def test_ws_handshake_elsewhere_is_refused(family_server: FamilyHost) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(family_server.ws_url + "hello", proxy=None, open_timeout=10)
    # ASGI: closing before accepting makes the server answer 403. Elsewhere /hello is just
    # a page, and a 200 is no 101 either.
    expected = 403 if family_server.websockets else 200
    assert refused.value.response.status_code == expected


# -- the harness the contract relies on -----------------------------------------------------
# A server that forks a child which outlives nothing but would happily outlive its parent:
# the shape of a forking CGI server, and the reason stop() signals the whole group.
FORKING_SERVER = """
import http.server, os, sys, time
if os.fork() == 0:
    time.sleep(600)
    os._exit(0)
address = ("127.0.0.1", int(sys.argv[1]))
http.server.HTTPServer(address, http.server.BaseHTTPRequestHandler).serve_forever()
"""


def test_harness_stops_the_whole_process_group() -> None:
    pool = ServerPool()
    try:
        server = pool.start_peer(lambda port: [sys.executable, "-c", FORKING_SERVER, str(port)])
        assert len(server.group_pids()) == 2  # the server and its child
    finally:
        pool.stop_all()  # fails the test if any process of the group is left
    assert server.group_pids() == []
    assert server.proc is not None and server.proc.poll() is not None
