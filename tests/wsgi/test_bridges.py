"""The interface outlives the server: one WSGI app, ``apps.wsgi:app``, served three ways.

1. by this era's threaded server (``python -m servers wsgi``), the reference here;
2. by the FastCGI application server behind our FastCGI gateway
   (``python -m servers fastcgi --wsgi apps.wsgi:app``): environ built from PARAMS records;
3. as a CGI script under the CGI server: ``apps/cgi-bin/wsgi`` hands each request to the
   app through ``wsgiref.handlers.CGIHandler``, with SCRIPT_NAME=/wsgi, so ``/wsgi/hello``
   is the family's ``/hello``; environ built from a process environment.

Same requests, same answers, byte for byte: status, Content-Type, Content-Length and body.
Only ``/whoami`` differs, on purpose: it says who ran the app. A bridge whose pieces are
missing from the checkout is skipped with the name of what is missing.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from servers.launch import REPO_ROOT, ServerProcess, our_server_argv
from tests.conftest import ServerPool

from .support import client

UPLOAD = hashlib.sha256(b"seed").digest() * 10_000  # 320 KB, a few FastCGI records' worth


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: Callable[[], bytes | Iterator[bytes] | None] = lambda: None
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


CALLS = [
    Call("GET", "/hello"),
    Call("HEAD", "/hello"),
    Call("GET", "/echo?a=1&b=caf%C3%A9"),
    Call("POST", "/echo", lambda: b"posted body", (("content-type", "text/x-test"),)),
    Call("POST", "/upload", lambda: UPLOAD),
    Call("POST", "/upload?chunked", lambda: iter([UPLOAD[:100_000], UPLOAD[100_000:]])),
    Call("GET", "/sleep?ms=1"),
    Call("GET", "/cpu?n=1000"),
    Call("GET", "/stream?chunks=3&delay_ms=0"),
    Call("GET", "/page"),
    Call("GET", "/ws"),
    Call("GET", "/nowhere"),
    Call("DELETE", "/hello"),
    Call("GET", "/sleep?ms=abc"),
]


def answer(http: httpx.Client, prefix: str, call: Call) -> tuple[object, ...]:
    reply = http.request(call.method, prefix + call.path, content=call.body(), headers=call.headers)
    headers = reply.headers
    framing = headers.get("content-length") or headers.get("transfer-encoding")
    return reply.status_code, headers.get("content-type"), framing, reply.content


# -- the three hosts ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Host:
    name: str
    server: ServerProcess
    prefix: str  # the path in front of the family's routes


def _missing(bridge: str) -> str | None:
    """What this checkout lacks for a bridge, or None if it has everything."""
    if bridge == "fastcgi":
        for module in ("servers.fastcgi.gateway", "servers.fastcgi.app_server"):
            if importlib.util.find_spec(module) is None:
                return f"{module} is not in this checkout yet"
    if bridge == "cgi":
        if importlib.util.find_spec("servers.cgi") is None:
            return "servers.cgi is not in this checkout yet"
        if not (REPO_ROOT / "apps" / "cgi-bin" / "wsgi").exists():
            return "apps/cgi-bin/wsgi (the family under CGIHandler) is not there yet"
    return None


@pytest.fixture(scope="module")
def hosts() -> Iterator[dict[str, Host]]:
    pool = ServerPool()
    started = {
        "wsgi": Host("wsgi", pool(our_server_argv("wsgi"), name="wsgi"), ""),
    }
    try:
        if _missing("fastcgi") is None:
            argv = our_server_argv("fastcgi", "--wsgi", "apps.wsgi:app")
            started["fastcgi"] = Host("fastcgi", pool(argv, name="fastcgi"), "")
        if _missing("cgi") is None:
            started["cgi"] = Host("cgi", pool(our_server_argv("cgi"), name="cgi"), "/wsgi")
        yield started
    finally:
        pool.stop_all()


@pytest.fixture(params=["fastcgi", "cgi"])
def bridge(request: pytest.FixtureRequest, hosts: dict[str, Host]) -> Host:
    if (missing := _missing(request.param)) is not None:
        pytest.skip(f"the {request.param} bridge: {missing}")
    return hosts[request.param]


@pytest.mark.parametrize("call", CALLS, ids=lambda call: call.id)
def test_the_same_request_gets_the_same_answer(
    hosts: dict[str, Host], bridge: Host, call: Call
) -> None:
    reference = hosts["wsgi"]
    with client(reference.server) as direct, client(bridge.server, timeout=30) as bridged:
        expected = answer(direct, "", call)
        assert answer(bridged, bridge.prefix, call) == expected


def test_whoami_says_who_ran_the_app(hosts: dict[str, Host], bridge: Host) -> None:
    """The one route that tells the hosts apart: a pool thread of the WSGI server, a
    thread of the FastCGI application server, or a CGI process of its own per request."""
    with client(hosts["wsgi"].server) as direct, client(bridge.server, timeout=30) as bridged:
        assert direct.get("/whoami").json()["thread"].startswith("wsgi-worker-")
        first, second = (bridged.get(bridge.prefix + "/whoami").json() for _ in range(2))
    if bridge.name == "fastcgi":
        assert first["era"] == "fastcgi" and first["pid"] == second["pid"]
        assert first["pid"] in bridge.server.group_pids()  # the app server: long-running
    else:
        assert first["era"] == "wsgi" and first["thread"] == "MainThread"
        assert first["pid"] != second["pid"]  # a new process for every request
