"""The family app in process, without sockets: the apps against their interface specs.

* Every WSGI request runs under ``wsgiref.validate.validator`` with warnings turned into
  errors, so any break of PEP 3333 (a wrong header type, a missing close(), a read with no
  size) fails the test that caused it.
* The ASGI app is driven with a fake ``receive``/``send`` pair that checks the message
  order of ASGI 3.0 (start, then bodies, nothing after the last one).
* Deterministic requests are run through both flavours and must give the same bytes: the
  promise of apps/README.md, kept before any server is involved.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator

import pytest

from apps import asgi, family, responder, wsgi
from tests.test_family_contract import (
    BAD_PARAMETER,
    CPU_RESULTS,
    HELLO,
    NOT_ALLOWED,
    NOT_FOUND,
    TOO_LARGE,
    UPGRADE_REQUIRED,
    WS_UNSUPPORTED,
)

README = Path(family.__file__).with_name("README.md")


@dataclass
class Answer:
    """What an app answered, in the same shape for both flavours."""

    status: int
    headers: list[tuple[str, str]]  # names lower-cased, as ASGI has them
    pieces: list[bytes] = field(default_factory=list)  # the body as the app handed it over

    @property
    def body(self) -> bytes:
        return b"".join(self.pieces)

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)

    def essentials(self) -> tuple[int, list[tuple[str, str]], bytes]:
        return self.status, self.headers, self.body


# -- the WSGI driver ------------------------------------------------------------------------
class RecordingInput(io.BytesIO):
    """wsgi.input that remembers the size of every read, to prove bodies are read in pieces."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.sizes: list[int | None] = []

    def read(self, size: int | None = -1) -> bytes:
        self.sizes.append(size)
        return super().read(size)


def call_wsgi(
    method: str,
    target: str,
    body: bytes = b"",
    *,
    headers: Sequence[tuple[str, str]] = (),
    content_length: str | None = None,
    extra: dict[str, Any] | None = None,
    validate: bool = True,
) -> tuple[Answer, RecordingInput]:
    """Run one request through apps.wsgi:app (under the validator); return the answer and
    the input, which knows how the app read it."""
    path, _, query = target.partition("?")
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ.update(REQUEST_METHOD=method, PATH_INFO=path, QUERY_STRING=query)
    environ["SERVER_PROTOCOL"] = "HTTP/1.1"
    environ["wsgi.input"] = recording = RecordingInput(body)
    if content_length is None and (body or method == "POST"):
        content_length = str(len(body))
    if content_length is not None:
        environ["CONTENT_LENGTH"] = content_length
    for name, value in headers:
        key = name.upper().replace("-", "_")
        environ[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = value
    environ.update(extra or {})
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.append((status, headers))
        return lambda data: pytest.fail("the family app never uses write()")

    application = validator(wsgi.app) if validate else wsgi.app
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = application(environ, start_response)
        try:
            pieces = list(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    assert len(started) == 1
    status, raw_headers = started[0]
    answer = Answer(int(status.split()[0]), [(k.lower(), v) for k, v in raw_headers], pieces)
    return answer, recording


# -- the ASGI driver ------------------------------------------------------------------------
def http_scope(method: str, target: str, headers: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    path, _, query = target.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


class FakeHTTPServer:
    """receive() hands out the body messages, then blocks until the response is complete
    (or says http.disconnect at once, if the client is to leave); send() checks the order."""

    def __init__(self, body_pieces: Iterable[bytes], *, disconnect: bool = False) -> None:
        pieces = list(body_pieces) or [b""]
        self.inbox: list[dict[str, Any]] = [
            {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
            for i, piece in enumerate(pieces)
        ]
        self.disconnect = disconnect
        self.sent: list[dict[str, Any]] = []
        self.complete = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        if self.inbox:
            return self.inbox.pop(0)
        if not self.disconnect:
            await self.complete.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Any) -> None:
        assert not self.complete.is_set(), f"sent {message['type']} after the last body"
        expected = "http.response.body" if self.sent else "http.response.start"
        assert message["type"] == expected, f"expected {expected!r}, got {message['type']!r}"
        if expected == "http.response.start":
            assert isinstance(message["status"], int)
            for name, value in message["headers"]:
                assert isinstance(name, bytes) and isinstance(value, bytes)
                assert name == name.lower(), "ASGI header names must be lower-cased"
        else:
            assert isinstance(message["body"], bytes)
            if not message.get("more_body", False):
                self.complete.set()
        self.sent.append(dict(message))

    def answer(self) -> Answer:
        assert self.complete.is_set(), "the app returned before its last body message"
        start, *bodies = self.sent
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start["headers"]]
        return Answer(start["status"], headers, [m["body"] for m in bodies if m["body"]])


def call_asgi(
    method: str,
    target: str,
    body_pieces: Iterable[bytes] = (),
    *,
    headers: Sequence[tuple[str, str]] = (),
    extra: dict[str, Any] | None = None,
) -> Answer:
    async def run() -> Answer:
        server = FakeHTTPServer(body_pieces)
        scope = {**http_scope(method, target, headers), **(extra or {})}
        await asgi.app(scope, server.receive, server.send)
        return server.answer()

    return asyncio.run(run())


# -- both flavours, same bytes --------------------------------------------------------------
BIG = bytes(range(256)) * 4096  # 1 MiB
# (method, target, body, headers): requests whose answers are deterministic.
DETERMINISTIC = [
    ("GET", "/hello", b"", ()),
    ("HEAD", "/hello", b"", ()),
    ("GET", "/echo?say=hi&x=%20+1", b"", ()),
    ("GET", "/echo", b"", ()),
    ("POST", "/echo", b"some bytes", (("Content-Type", "text/x-mine"),)),
    ("POST", "/echo", b"no label", ()),
    ("POST", "/echo", BIG, ()),
    ("POST", "/echo", BIG + b"!", ()),
    ("GET", "/sleep?ms=0", b"", ()),
    ("GET", "/sleep?ms=007&other=x", b"", ()),
    ("GET", "/cpu?n=3", b"", ()),
    ("HEAD", "/cpu?n=3", b"", ()),
    ("GET", "/stream?chunks=3&delay_ms=0", b"", ()),
    ("HEAD", "/stream?chunks=3&delay_ms=0", b"", ()),
    ("GET", "/events?count=3&delay_ms=0", b"", ()),
    ("HEAD", "/events?count=3&delay_ms=0", b"", ()),
    ("POST", "/upload", BIG, ()),
    ("POST", "/upload", b"", ()),
    ("GET", "/page", b"", ()),
    ("HEAD", "/page", b"", ()),
    ("GET", "/chat", b"", ()),
    ("HEAD", "/chat", b"", ()),
    ("GET", "/nope", b"", ()),
    ("GET", "/", b"", ()),
    ("DELETE", "/hello", b"", ()),
    ("GET", "/upload", b"", ()),
    ("PUT", "/echo", b"x", ()),
    ("GET", "/sleep?ms=-1", b"", ()),
    ("GET", "/sleep?ms=1&ms=2", b"", ()),
    ("GET", "/cpu?n=%2B5", b"", ()),
    ("GET", "/cpu?n=%D9%A1", b"", ()),  # ARABIC-INDIC DIGIT ONE: a digit, not an ASCII one
    ("GET", "/stream?chunks=1001", b"", ()),
    ("GET", "/stream?delay_ms=x", b"", ()),
    ("GET", "/events?count=0", b"", ()),
    ("GET", "/events?delay_ms=10001", b"", ()),
    ("DELETE", "/events", b"", ()),
    ("POST", "/chat", b"x", ()),
]


def _id(case: tuple[str, str, bytes, Any]) -> str:
    method, target, body, _ = case
    return f"{method} {target} {len(body)}B"


@pytest.mark.parametrize("case", DETERMINISTIC, ids=_id)
def test_both_flavours_answer_the_same_bytes(case: tuple[str, str, bytes, Any]) -> None:
    method, target, body, headers = case
    from_wsgi, _ = call_wsgi(method, target, body, headers=headers)
    pieces = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    from_asgi = call_asgi(method, target, pieces, headers=headers)
    assert from_wsgi.essentials() == from_asgi.essentials()
    if method == "HEAD":
        assert from_wsgi.body == b""


EXPECTED_BODIES = {
    ("GET", "/hello"): (200, HELLO),
    ("GET", "/nope"): (404, NOT_FOUND),
    ("DELETE", "/hello"): (405, NOT_ALLOWED["/hello"]),
    ("GET", "/upload"): (405, NOT_ALLOWED["/upload"]),
    ("GET", "/sleep?ms=-1"): (400, BAD_PARAMETER["ms"]),
    ("GET", "/cpu?n=%2B5"): (400, BAD_PARAMETER["n"]),
    ("GET", "/stream?chunks=1001"): (400, BAD_PARAMETER["chunks"]),
    ("GET", "/stream?delay_ms=x"): (400, BAD_PARAMETER["delay_ms"]),
    ("GET", "/events?count=0"): (400, BAD_PARAMETER["count"]),
    ("GET", "/events?delay_ms=10001"): (400, BAD_PARAMETER["events delay_ms"]),
    ("DELETE", "/events"): (405, NOT_ALLOWED["/events"]),
    ("POST", "/chat"): (405, NOT_ALLOWED["/chat"]),
    ("GET", "/sleep?ms=007&other=x"): (200, b"slept 7 ms\n"),
    ("GET", "/cpu?n=3"): (200, f"cpu n=3 result={CPU_RESULTS[3]}\n".encode()),
}


@pytest.mark.parametrize(("request_line", "expected"), EXPECTED_BODIES.items(), ids=str)
def test_bodies_are_the_contracts_bytes(
    request_line: tuple[str, str], expected: tuple[int, bytes]
) -> None:
    answer, _ = call_wsgi(*request_line)
    assert (answer.status, answer.body) == expected
    assert answer.header("content-type") == "text/plain; charset=utf-8"
    assert answer.header("content-length") == str(len(expected[1]))


def test_echo_over_the_limit_is_413_in_both() -> None:
    answer, _ = call_wsgi("POST", "/echo", BIG + b"!")
    assert (answer.status, answer.body) == (413, TOO_LARGE)
    # Without Content-Length the limit is counted as the body arrives.
    answer, _ = call_wsgi(
        "POST", "/echo", BIG + b"!", content_length="", extra={"wsgi.input_terminated": True}
    )
    assert (answer.status, answer.body) == (413, TOO_LARGE)
    assert call_asgi("POST", "/echo", [BIG, b"!"]).essentials()[::2] == (413, TOO_LARGE)


# -- WSGI specifics -------------------------------------------------------------------------
def test_wsgi_upload_reads_in_pieces_never_whole() -> None:
    data = BIG * 3
    answer, body = call_wsgi("POST", "/upload", data)
    sha = hashlib.sha256(data).hexdigest()
    assert answer.body == f'{{"bytes":{len(data)},"sha256":"{sha}"}}\n'.encode()
    sizes = body.sizes
    assert len(sizes) >= len(data) // family.READ_SIZE
    assert all(size is not None and 0 < size <= family.READ_SIZE for size in sizes)


def test_wsgi_body_without_content_length() -> None:
    # The server de-chunked the body and says so: read to the end.
    answer, _ = call_wsgi(
        "POST", "/upload", b"abc", content_length="", extra={"wsgi.input_terminated": True}
    )
    assert answer.body == family.upload_json(3, hashlib.sha256(b"abc").hexdigest())
    # No promise: PEP 3333 says there is no body to read, and reading could block.
    answer, body = call_wsgi("POST", "/upload", b"abc", content_length="")
    assert answer.body == family.upload_json(0, hashlib.sha256(b"").hexdigest())
    assert body.sizes == []


def test_wsgi_short_body_and_bad_content_length_are_400() -> None:
    answer, _ = call_wsgi("POST", "/upload", b"abc", content_length="10")
    assert (answer.status, answer.body) == (400, family.incomplete_body().body)
    # The validator itself refuses such an environ, so this one runs without it.
    answer, _ = call_wsgi("POST", "/upload", b"abc", content_length="3x", validate=False)
    assert (answer.status, answer.body) == (400, family.bad_content_length().body)


def test_wsgi_stream_is_lazy_and_paced(monkeypatch: pytest.MonkeyPatch) -> None:
    naps: list[float] = []
    monkeypatch.setattr(time, "sleep", naps.append)
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ.update(PATH_INFO="/stream", QUERY_STRING="chunks=3&delay_ms=250")
    result = wsgi.app(environ, lambda status, headers, exc_info=None: lambda data: None)
    assert naps == []  # nothing is made before the server asks for it
    iterator = iter(result)
    assert next(iterator) == b"chunk 1 of 3\n"
    assert naps == []
    assert list(iterator) == [b"chunk 2 of 3\n", b"chunk 3 of 3\n"]
    assert naps == [0.25, 0.25]


def test_wsgi_stream_close_stops_it(monkeypatch: pytest.MonkeyPatch) -> None:
    naps: list[float] = []
    monkeypatch.setattr(time, "sleep", naps.append)
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ.update(PATH_INFO="/stream", QUERY_STRING="chunks=1000&delay_ms=1")
    result = wsgi.app(environ, lambda status, headers, exc_info=None: lambda data: None)
    iterator = iter(result)
    next(iterator)
    result.close()  # type: ignore[attr-defined]  # the server's move when the client leaves
    assert list(iterator) == []
    assert naps == []


def test_wsgi_events_are_paced_one_second_apart_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    naps: list[float] = []
    monkeypatch.setattr(time, "sleep", naps.append)
    answer, _ = call_wsgi("GET", "/events?count=3")
    assert answer.pieces == [f"id: {i}\ndata: event {i} of 3\n\n".encode() for i in (1, 2, 3)]
    assert naps == [1.0, 1.0]  # between events, none before the first or after the last
    assert answer.headers == [("content-type", "text/event-stream"), ("cache-control", "no-cache")]


@pytest.mark.parametrize("ms", [0, 1, 60000])
def test_wsgi_sleep_uses_time_sleep(monkeypatch: pytest.MonkeyPatch, ms: int) -> None:
    naps: list[float] = []
    monkeypatch.setattr(time, "sleep", naps.append)
    answer, _ = call_wsgi("GET", f"/sleep?ms={ms}")
    assert answer.body == f"slept {ms} ms\n".encode()
    assert naps == [ms / 1000]


def test_wsgi_whoami_and_env() -> None:
    answer, _ = call_wsgi("GET", "/whoami")
    report = json.loads(answer.body)
    assert report["era"] == "wsgi" and report["task"] is None
    answer, _ = call_wsgi("GET", "/whoami", extra={"gatewaylab.era": "fastcgi"})
    assert json.loads(answer.body)["era"] == "fastcgi"
    answer, _ = call_wsgi("GET", "/env?q=1", headers=[("X-Probe", "yes")])
    received = json.loads(answer.body)
    assert received["HTTP_X_PROBE"] == "yes" and received["QUERY_STRING"] == "q=1"
    assert received["wsgi.version"] == [1, 0]
    assert received["wsgi.input"].startswith("<")  # a file, shown by its repr


def test_wsgi_ws_is_501() -> None:
    answer, _ = call_wsgi("GET", "/ws")
    assert (answer.status, answer.body) == (501, WS_UNSUPPORTED)


def test_wsgi_chat_answers_the_page_even_to_a_handshake() -> None:
    upgrade = [("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")]
    answer, _ = call_wsgi("GET", "/chat", headers=upgrade)
    assert (answer.status, answer.body) == (200, family.render_chat_page())


# -- ASGI specifics -------------------------------------------------------------------------
def test_asgi_stream_sends_one_message_per_line() -> None:
    async def run() -> list[dict[str, Any]]:
        server = FakeHTTPServer([])
        await asgi.app(
            http_scope("GET", "/stream?chunks=3&delay_ms=1"), server.receive, server.send
        )
        return server.sent

    start, *bodies = asyncio.run(run())
    assert [(m["body"], m.get("more_body", False)) for m in bodies] == [
        (b"chunk 1 of 3\n", True),
        (b"chunk 2 of 3\n", True),
        (b"chunk 3 of 3\n", True),
        (b"", False),
    ]
    assert b"content-length" not in dict(start["headers"])


def test_asgi_events_send_one_message_per_event() -> None:
    async def run() -> list[dict[str, Any]]:
        server = FakeHTTPServer([])
        await asgi.app(http_scope("GET", "/events?count=2&delay_ms=1"), server.receive, server.send)
        return server.sent

    start, *bodies = asyncio.run(run())
    assert [(m["body"], m.get("more_body", False)) for m in bodies] == [
        (b"id: 1\ndata: event 1 of 2\n\n", True),
        (b"id: 2\ndata: event 2 of 2\n\n", True),
        (b"", False),
    ]
    assert start["headers"] == [
        (b"content-type", b"text/event-stream"),
        (b"cache-control", b"no-cache"),
    ]


def test_asgi_upload_hashes_every_message() -> None:
    pieces = [b"a" * 10, b"", b"b" * 70000, b"c"]
    answer = call_asgi("POST", "/upload", pieces)
    data = b"".join(pieces)
    assert answer.body == family.upload_json(len(data), hashlib.sha256(data).hexdigest())


def _run_until_disconnect(target: str, body_pieces: Sequence[bytes] = ()) -> list[Any]:
    """Run a request whose client leaves at once; return what the app still sent."""

    async def run() -> list[Any]:
        server = FakeHTTPServer(body_pieces, disconnect=True)
        if body_pieces:
            server.inbox[-1]["more_body"] = True  # the body never finishes
        # A hang guard, far beyond what the request needs once it notices the disconnect
        # and far below the 60 s it would take if it did not.
        await asyncio.wait_for(
            asgi.app(
                http_scope("POST" if body_pieces else "GET", target), server.receive, server.send
            ),
            timeout=30,
        )
        return server.sent

    return asyncio.run(run())


def test_asgi_stops_sleeping_when_the_client_leaves() -> None:
    assert _run_until_disconnect("/sleep?ms=60000") == []


def test_asgi_stops_streaming_when_the_client_leaves() -> None:
    sent = _run_until_disconnect("/stream?chunks=3&delay_ms=10000")
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[1]["body"] == b"chunk 1 of 3\n"


def test_asgi_stops_sending_events_when_the_client_leaves() -> None:
    sent = _run_until_disconnect("/events?count=3")  # a second apart: it must not wait them
    assert [m["body"] for m in sent[1:]] == [b"id: 1\ndata: event 1 of 3\n\n"]


def test_asgi_upload_interrupted_answers_nothing() -> None:
    assert _run_until_disconnect("/upload", [b"part of a body"]) == []


def test_asgi_whoami_and_env() -> None:
    report = json.loads(call_asgi("GET", "/whoami").body)
    assert report["era"] == "asgi"
    assert isinstance(report["task"], str)
    report = json.loads(call_asgi("GET", "/whoami", extra={"gatewaylab.era": "x"}).body)
    assert report["era"] == "x"
    received = json.loads(call_asgi("GET", "/env?q=%FF", headers=[("X-Probe", "ÿes")]).body)
    assert received["query_string"] == "q=%FF"
    assert ["x-probe", "ÿes"] in received["headers"]  # bytes shown as latin-1
    assert received["client"] == ["127.0.0.1", 50000]


def test_asgi_ws_over_http_is_426() -> None:
    answer = call_asgi("GET", "/ws")
    assert (answer.status, answer.body) == (426, UPGRADE_REQUIRED)
    assert answer.header("upgrade") == "websocket"


def test_asgi_chat_over_http_is_the_page() -> None:
    answer = call_asgi("GET", "/chat")
    assert (answer.status, answer.body) == (200, family.render_chat_page())


def _websocket_conversation(path: str, incoming: list[dict[str, Any]]) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        inbox = [{"type": "websocket.connect"}, *incoming]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return inbox.pop(0)

        async def send(message: Any) -> None:
            sent.append(dict(message))

        scope = {**http_scope("GET", path), "type": "websocket", "scheme": "ws", "subprotocols": []}
        del scope["method"]
        await asgi.app(scope, receive, send)
        assert inbox == [], "the app returned before the client closed"
        return sent

    return asyncio.run(run())


def test_asgi_websocket_echoes_text_and_bytes() -> None:
    sent = _websocket_conversation(
        "/ws",
        [
            {"type": "websocket.receive", "text": "héllo"},
            {"type": "websocket.receive", "bytes": b"\x00\xff"},
            {"type": "websocket.receive", "text": "", "bytes": None},
            {"type": "websocket.disconnect", "code": 1000},
        ],
    )
    assert sent == [
        {"type": "websocket.accept"},
        {"type": "websocket.send", "text": "héllo"},
        {"type": "websocket.send", "bytes": b"\x00\xff"},
        {"type": "websocket.send", "text": ""},
    ]


def test_asgi_websocket_elsewhere_is_closed_before_accept() -> None:
    sent = _websocket_conversation("/hello", [])
    assert [m["type"] for m in sent] == ["websocket.close"]


def test_asgi_lifespan_startup_and_shutdown() -> None:
    async def run() -> list[str]:
        inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        sent: list[str] = []

        async def receive() -> dict[str, Any]:
            return inbox.pop(0)

        async def send(message: Any) -> None:
            sent.append(message["type"])

        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        await asgi.app(scope, receive, send)
        return sent

    assert asyncio.run(run()) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_asgi_unknown_scope_type_raises() -> None:
    async def never() -> dict[str, Any]:
        raise AssertionError("not reached")

    async def ignore(message: Any) -> None:
        raise AssertionError("not reached")

    with pytest.raises(ValueError, match="'telepathy'"):
        asyncio.run(asgi.app({"type": "telepathy"}, never, ignore))


# -- family.py on its own -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "value"),
    [(b"", 100), (b"ms=0", 0), (b"ms=60000", 60000), (b"ms=%31%32", 12), (b"x=1&ms=0042", 42)],
)
def test_int_param_accepts(query: bytes, value: int) -> None:
    assert family.int_param(query, family.SLEEP_MS) == value


@pytest.mark.parametrize(
    "query",
    [
        b"ms",
        b"ms=",
        b"ms=+1",
        b"ms=%2B1",
        b"ms=1_0",
        b"ms= 1",
        b"ms=\xd9\xa1",
        b"ms=-0001",
        b"ms=60001",
        b"ms=1&ms=1",
    ],
)
def test_int_param_refuses(query: bytes) -> None:
    with pytest.raises(family.ClientError) as refused:
        family.int_param(query, family.SLEEP_MS)
    assert refused.value.response.status == 400
    assert refused.value.response.body == BAD_PARAMETER["ms"]


def test_cpu_work_is_the_lcg() -> None:
    assert {n: family.cpu_work(n) for n in CPU_RESULTS} == CPU_RESULTS


def test_json_is_canonical() -> None:
    assert family.canonical_json({"b": 1, "a": "é"}) == b'{"a":"\\u00e9","b":1}\n'
    assert family.json_safe({1: (b"\xff", None, object)}) == {"1": ["ÿ", None, repr(object)]}


def test_every_route_has_a_handler_in_every_flavour() -> None:
    paths = [route.path for route in family.ROUTES]
    assert list(wsgi._HANDLERS) == paths
    assert list(asgi._HANDLERS) == paths
    assert list(responder._HANDLERS) == paths
    # The CGI flavour: one script per route, named as its path.
    cgi_bin = README.with_name("cgi-bin")
    assert all((cgi_bin / path.lstrip("/")).is_file() for path in paths)


def test_events_defaults_and_bounds() -> None:
    plan = family.events(b"")
    assert (len(plan.chunks), plan.delay) == (5, 1.0)
    assert plan.chunks[-1] == b"id: 5\ndata: event 5 of 5\n\n"
    assert family.events(b"count=1000&delay_ms=10000").chunks[999].startswith(b"id: 1000\n")


# -- the README is the contract; keep it true -----------------------------------------------
def test_readme_lists_every_route_and_sentence() -> None:
    readme = README.read_text()
    for route in family.ROUTES:
        assert f"| `{route.path}" in readme, route.path
    sentences = [
        NOT_FOUND,
        NOT_ALLOWED["/upload"],
        TOO_LARGE,
        UPGRADE_REQUIRED,
        WS_UNSUPPORTED,
        family.bad_content_length().body,
        family.incomplete_body().body,
    ]
    for sentence in sentences:
        assert sentence.decode().rstrip("\n") in readme


def test_readme_page_digest_matches_the_template() -> None:
    readme = README.read_text()
    page = family.render_page()
    length = re.search(r"page-length: (\d+)", readme)
    digest = re.search(r"page-sha256: ([0-9a-f]{64})", readme)
    assert length and digest
    assert (int(length[1]), digest[1]) == (len(page), hashlib.sha256(page).hexdigest())


def test_readme_chat_digest_matches_the_template() -> None:
    readme = README.read_text()
    page = family.render_chat_page()
    # The page's one sentence for the eras without a room, as the README quotes it.
    sentence = "This era cannot host WebSockets; run the asgi era (python -m servers asgi)."
    assert sentence in readme and sentence.encode() in page
    length = re.search(r"chat-length: (\d+)", readme)
    digest = re.search(r"chat-sha256: ([0-9a-f]{64})", readme)
    assert length and digest
    assert (int(length[1]), digest[1]) == (len(page), hashlib.sha256(page).hexdigest())
