"""The HTTP connection scope, key by key ("HTTP Connection Scope" of the ASGI spec).

The probe's /scope route answers with the scope it was given, as JSON (bytes shown as
{"bytes": latin-1}), so each test reads what a real app would have seen.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from servers.launch import ServerProcess
from tests.conftest import ServerPool
from tests.wsgi.support import exchange, get

from .conftest import start_asgi


def scope_of(server: ServerProcess, request: bytes) -> dict[str, Any]:
    reply = exchange(server, request)
    assert reply.status == 200, reply
    scope: dict[str, Any] = json.loads(reply.body)
    return scope


def b(text: str) -> dict[str, str]:
    return {"bytes": text}


def test_the_required_keys_and_their_types(server: ServerProcess) -> None:
    scope = scope_of(server, get("/scope?a=1&b=%20"))
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/scope"
    assert scope["raw_path"] == b("/scope")
    assert scope["query_string"] == b("a=1&b=%20")  # still percent-encoded
    assert scope["root_path"] == ""
    assert scope["server"] == list(server.address)
    host, port = scope["client"]
    assert host == "127.0.0.1" and isinstance(port, int) and port != server.port


def test_path_is_decoded_and_raw_path_is_not(server: ServerProcess) -> None:
    scope = scope_of(server, get("/sc%6Fpe/caf%C3%A9%2Fx?q=%C3%A9"))
    # path: percent-decoded, then UTF-8-decoded (so %2F becomes a "/" the app cannot tell
    # from a real one: that is what raw_path is for).
    assert scope["path"] == "/scope/café/x"
    assert scope["raw_path"] == b("/sc%6Fpe/caf%C3%A9%2Fx")
    assert scope["query_string"] == b("q=%C3%A9")


def test_absolute_form_targets_give_the_path_alone(server: ServerProcess) -> None:
    # RFC 9112 §3.2.2: a server must accept the absolute form; the path is its path part.
    scope = scope_of(server, b"GET http://example.org/scope/x?y=1 HTTP/1.1\r\nHost: e\r\n\r\n")
    assert (scope["path"], scope["query_string"]) == ("/scope/x", b("y=1"))


def test_headers_are_lower_case_bytes_in_order_with_duplicates(server: ServerProcess) -> None:
    request = get(
        "/scope", "X-Forwarded-For: 10.0.0.1", "Accept: text/html", "X-Forwarded-For: 10.0.0.2"
    )
    headers = scope_of(server, request)["headers"]
    assert headers == [
        [b("host"), b("test")],
        [b("x-forwarded-for"), b("10.0.0.1")],
        [b("accept"), b("text/html")],
        [b("x-forwarded-for"), b("10.0.0.2")],
    ]


def test_header_values_keep_their_bytes(server: ServerProcess) -> None:
    headers = scope_of(server, get("/scope", "X-Name: caf\xe9"))["headers"]
    assert [b("x-name"), b("caf\xe9")] in headers  # latin-1 byte 0xe9, passed as is


def test_http_1_0_and_other_methods(server: ServerProcess) -> None:
    scope = scope_of(server, b"PATCH /scope HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
    assert (scope["http_version"], scope["method"]) == ("1.0", "PATCH")
    scope = scope_of(server, b"PROPFIND /scope HTTP/1.1\r\nHost: x\r\n\r\n")
    assert scope["method"] == "PROPFIND"


def test_extensions_are_advertised(server: ServerProcess) -> None:
    extensions = scope_of(server, get("/scope"))["extensions"]
    assert extensions == {"http.response.trailers": {}, "http.response.pathsend": {}}


def test_state_is_a_shallow_copy_of_the_lifespan_state(server: ServerProcess) -> None:
    # "Lifespan State": every scope gets a shallow copy. A key one request adds ("mine") is
    # not in the next scope; an object startup put there ("shared") is the same object.
    first = scope_of(server, get("/scope"))
    second = scope_of(server, get("/scope"))
    assert first["state"] == second["state"] == ["greeting", "shared"]
    assert len(second["shared"]) == len(first["shared"]) + 1


def test_root_path_is_a_prefix_of_path(start_server: ServerPool) -> None:
    # The WSGI compatibility section: PATH_INFO is path minus root_path, so path includes it.
    server = start_asgi(start_server, "--root-path", "/api")
    scope = scope_of(server, get("/scope"))
    assert (scope["root_path"], scope["path"], scope["raw_path"]) == (
        "/api",
        "/api/scope",
        b("/scope"),
    )


def test_each_request_runs_in_a_task_of_its_own(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, trust_env=False) as client:
        names = {client.get("/whoami").text for _ in range(3)}
    assert len(names) == 3 and all(name.startswith("Task-") for name in names)
