"""PEP 3333, the request half: ``environ`` ("environ Variables"), ``wsgi.input`` ("Input
and Error Streams") and Expect: 100-continue ("HTTP 1.1 Expect/Continue").

Each test names the rule it checks. The apps are in tests/wsgi/apps.py; the ones that
keep the contract run under wsgiref's validator inside the server, so every 200 here is
also the validator finding nothing wrong with our environ and our streams.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_to_bytes

import pytest

from servers.gateway import Peer, meta_variables
from servers.http import Limits, Request, ServerConnection
from servers.launch import ServerProcess
from servers.wsgi import SERVER_SOFTWARE

from .support import Gates, Wire, exchange, get, post

REQUIRED_CGI_KEYS = (
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
)


def environ_of(server: ServerProcess, request: bytes) -> dict[str, Any]:
    reply = exchange(server, request)
    assert reply.status == 200, reply.body
    shown: dict[str, Any] = json.loads(reply.body)["environ"]
    return shown


# -- environ -------------------------------------------------------------------------------------
def test_environ_is_a_plain_dict_with_every_required_key(server: ServerProcess) -> None:
    reply = exchange(server, get("/bare/environ?a=1"))
    seen = json.loads(reply.body)
    assert seen["type"] == "dict"  # "a builtin Python dictionary", not a subclass
    environ = seen["environ"]
    for key in REQUIRED_CGI_KEYS:
        assert key in environ, key
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"  # the request's protocol
    assert environ["SERVER_NAME"] == "test"  # from Host, without its port
    assert environ["SERVER_PORT"] == str(server.port)
    assert environ["wsgi.version"] == [1, 0]
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["wsgi.input"] == "<InputStream>"
    assert environ["wsgi.errors"] == "<TextIOWrapper>"  # sys.stderr, a text stream
    assert environ["wsgi.multithread"] is True
    assert environ["wsgi.multiprocess"] is False
    assert environ["wsgi.run_once"] is False
    assert environ["wsgi.input_terminated"] is True
    assert "wsgi.file_wrapper" in environ


def test_cgi_variables_are_native_strings_and_absent_rather_than_empty(
    server: ServerProcess,
) -> None:
    environ = environ_of(server, get("/environ"))
    cgi = {key: value for key, value in environ.items() if "." not in key}
    assert all(type(value) is str for value in cgi.values()), cgi
    # "may be empty or absent": with no body there is no CONTENT_LENGTH or CONTENT_TYPE.
    assert "CONTENT_LENGTH" not in environ and "CONTENT_TYPE" not in environ
    assert "REMOTE_USER" not in environ  # missing ones are left out, never set to ""
    assert environ["SCRIPT_NAME"] == "" and environ["PATH_INFO"] == "/environ"
    assert environ["REMOTE_ADDR"] == "127.0.0.1"


def test_server_protocol_is_the_requests_own(server: ServerProcess) -> None:
    environ = environ_of(server, get("/environ", version="1.0"))
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.0"


def test_path_info_is_decoded_as_latin_1_and_round_trips_to_utf_8(server: ServerProcess) -> None:
    """PEP 3333 "Unicode Issues": native strings hold bytes as latin-1 code points."""
    environ = environ_of(server, get("/environ/caf%C3%A9?name=caf%C3%A9"))
    assert environ["PATH_INFO"] == "/environ/cafÃ©"
    assert environ["PATH_INFO"].encode("latin-1").decode("utf-8") == "/environ/café"
    assert environ["QUERY_STRING"] == "name=caf%C3%A9"  # the query stays as it was sent


def test_header_bytes_reach_the_app_as_latin_1(server: ServerProcess) -> None:
    """A header byte above 0x7f (obs-text) becomes the code point of the same number."""
    environ = environ_of(server, get("/environ", "X-Accent: caf\xe9"))  # sent as 0xE9
    assert environ["HTTP_X_ACCENT"] == "café"
    assert environ["HTTP_X_ACCENT"].encode("latin-1") == b"caf\xe9"


def test_headers_become_http_variables_joined_like_cgi(server: ServerProcess) -> None:
    environ = environ_of(
        server,
        get("/environ", "X-Custom: one", "X-Custom: two", "Cookie: a=1", "Cookie: b=2"),
    )
    assert environ["HTTP_X_CUSTOM"] == "one, two"
    assert environ["HTTP_COOKIE"] == "a=1; b=2"  # RFC 6265 §5.4: cookies join with "; "


def test_a_header_name_with_an_underscore_is_dropped(server: ServerProcess) -> None:
    """X-Foo and X_Foo would both be HTTP_X_FOO: a client could forge a header that a proxy
    in front believed it had removed. Dropped, as nginx and gunicorn do."""
    environ = environ_of(server, get("/environ", "X_Foo: underscore", "X-Foo: dash"))
    assert environ["HTTP_X_FOO"] == "dash"
    environ = environ_of(server, get("/environ", "X_Foo: underscore"))
    assert "HTTP_X_FOO" not in environ


def test_a_proxy_header_never_becomes_http_proxy(server: ServerProcess) -> None:
    """httpoxy (CVE-2016-5385 and siblings): HTTP_PROXY would redirect the app's own
    outgoing requests, since libraries read it as the proxy setting."""
    environ = environ_of(server, get("/environ", "Proxy: http://attacker.example:8080"))
    assert "HTTP_PROXY" not in environ


def test_content_type_and_length_are_cgi_variables_not_http_ones(server: ServerProcess) -> None:
    environ = environ_of(server, post("/environ", b"abc", "Content-Type: text/plain"))
    assert environ["CONTENT_LENGTH"] == "3"
    assert environ["CONTENT_TYPE"] == "text/plain"
    assert "HTTP_CONTENT_LENGTH" not in environ and "HTTP_CONTENT_TYPE" not in environ


def test_a_chunked_body_has_no_content_length_and_input_is_terminated(
    server: ServerProcess,
) -> None:
    """De-chunked by the server; with no CONTENT_LENGTH the app may read to EOF only
    because wsgi.input_terminated says the server ends the stream itself."""
    environ = environ_of(server, post("/environ", b"hello world", chunked=True))
    assert "CONTENT_LENGTH" not in environ
    assert environ["wsgi.input_terminated"] is True
    reply = exchange(server, post("/bare/read-all", b"hello world", chunked=True))
    assert reply.body == b"11 0\nhello world"  # read() is all of it, then b""


# The server builds environ itself, from parts made once per server and once per
# connection; servers/gateway.py's meta_variables() builds the same names for CGI and
# FastCGI. The eras must not drift apart: every CGI key must be what the gateway makes.
SAME_AS_THE_GATEWAY = {
    "plain": get("/environ?a=1&b=%20"),
    **{
        f"Host: {host}": get("/environ").replace(b"Host: test", f"Host: {host}".encode())
        for host in ("example.test:8080", "example.test:", "[::1]:8080", "[::1]", "10.0.0.1")
    },
    "no host, HTTP/1.0": b"GET /environ HTTP/1.0\r\n\r\n",
    "encoded path": get("/environ/caf%C3%A9?name=caf%C3%A9"),
    "absolute-form": get("http://example.test/environ?x=1"),
    "headers": get(
        "/environ",
        "X-Custom: one",
        "X-Custom: two",
        "Cookie: a=1",
        "Cookie: b=2",
        "X_Foo: underscore",
        "Authorization: Basic eDp5",
        "Proxy: http://attacker.example",
        "X-Accent: caf\xe9",
    ),
    "body": post("/environ", b"abc", "Content-Type: text/plain"),
    "chunked body": post("/environ", b"hello world", chunked=True),
}


@pytest.mark.parametrize("name", SAME_AS_THE_GATEWAY)
def test_cgi_variables_are_the_ones_the_gateway_builds(server: ServerProcess, name: str) -> None:
    data = SAME_AS_THE_GATEWAY[name]
    conn = ServerConnection(Limits(), b"test")
    conn.receive_data(data)
    request = conn.next_event()
    assert isinstance(request, Request)
    with Wire(server) as wire:
        remote, local = wire.sock.getsockname(), wire.sock.getpeername()
        wire.send(data)
        reply = wire.reply(request.method.decode())
    variables = meta_variables(
        request,
        Peer(local[0], local[1], remote[0], remote[1]),
        script_name="",
        path_info=unquote_to_bytes(request.path).decode("latin-1"),
        content_length=request.content_length or 0,
        server_software=SERVER_SOFTWARE,
    )
    expected = {key: value.decode("latin-1") for key, value in variables.items()}
    assert reply.status == 200, reply.body
    environ = json.loads(reply.body)["environ"]
    assert {key: value for key, value in environ.items() if "." not in key} == expected


# -- wsgi.input ----------------------------------------------------------------------------------
BODY = b"line one\nline two\nthree"
READS = {
    "read-sizes": ["lin", "", "e on", "e\nline two\nthree", ""],
    "readline": ["line one\n", "line", "", " two\n", "three", ""],
    "readlines": ["line one\n", "line two\n", "three"],
    "readlines-none": ["line one\n", "line two\n", "three"],
    "readlines-hint": ["line one\n", "|", "line two\nthree"],
    "iter": ["line one\n", "line two\n", "three"],
}


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("how", READS)
def test_input_read_readline_readlines_and_iteration(
    server: ServerProcess, how: str, chunked: bool
) -> None:
    """read(size) stops at the body's end and then returns b""; readline(size) honours the
    size (cgi and multipart parsers rely on it); readlines(hint) stops after the hint."""
    reply = exchange(server, post(f"/input?how={how}", BODY, chunked=chunked))
    assert reply.status == 200, reply.body
    assert json.loads(reply.body) == READS[how]


def test_input_read_without_a_size_returns_the_rest(server: ServerProcess) -> None:
    reply = exchange(server, post("/bare/read-all", b"x" * 100_000))
    assert reply.body == b"100000 0\n" + b"x" * 100_000


def test_a_body_the_app_leaves_unread_is_drained_for_the_next_request(
    server: ServerProcess,
) -> None:
    with Wire(server) as wire:
        wire.send(post("/never-reads", b"y" * 50_000) + get("/thread"))
        assert wire.reply().body == b"did not read the body\n"
        assert wire.reply().body.startswith(b"wsgi-worker-")


# -- Expect: 100-continue ------------------------------------------------------------------------
def test_100_continue_is_sent_when_the_app_first_reads(server: ServerProcess, gates: Gates) -> None:
    """PEP 3333 "HTTP 1.1 Expect/Continue", the second way: the 100 goes out on the app's
    first read of wsgi.input, not before, so an app that refuses an upload saves it."""
    head = post("/gate-read?token=expect-read", b"", "Expect: 100-continue")
    head = head.replace(b"Content-Length: 0", b"Content-Length: 5")
    with Wire(server) as wire:
        wire.send(head)
        gates.wait("expect-read")  # the app runs, and has not read yet
        assert wire.quiet_for(0.3), "something was sent before the app read the body"
        gates.release("expect-read")
        assert wire.interim() == b"HTTP/1.1 100 Continue\r\n\r\n"
        wire.send(b"hello")
        reply = wire.reply("POST")
        assert (reply.status, reply.body) == (200, b"read: hello\n")


def test_no_100_continue_when_the_app_never_reads(server: ServerProcess) -> None:
    """The body never comes, so the connection cannot carry another request: closed."""
    head = post("/never-reads", b"", "Expect: 100-continue")
    head = head.replace(b"Content-Length: 0", b"Content-Length: 5")
    with Wire(server) as wire:
        wire.send(head)
        reply = wire.reply("POST")
        assert reply.interim == []
        assert reply.status == 200 and reply.headers[b"connection"] == b"close"
        assert wire.closed_by_server()
