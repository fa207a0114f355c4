"""RFC 3875 §4 and §7.2, one item at a time: what a script is given.

Every test asks the DUMP script (tests/cgi/support.py) what it received: its environment
exactly as execve passed it, its argv, its descriptors, its stdin. The section of the RFC
that each assertion checks is named beside it, so that a failure names the rule it broke.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from servers.launch import ServerProcess
from tests.cgi.support import DUMP, SH, connect, dump, exchange, get, make_root, start_cgi
from tests.conftest import ServerPool

SCRIPTS = {
    "dump": DUMP,
    "sub/dump": DUMP,
    # dash reads its own /proc entry: which signals did it start with ignored?
    "sigign": SH + "printf 'Content-Type: text/plain\\n\\n'\ngrep '^SigIgn' /proc/$$/status\n",
}
# The meta-variables the server may set (§4.1 and the de facto ones), and PATH.
SERVER_VARIABLES = {
    "AUTH_TYPE",
    "CONTENT_LENGTH",
    "CONTENT_TYPE",
    "DOCUMENT_ROOT",
    "GATEWAY_INTERFACE",
    "PATH",
    "PATH_INFO",
    "PATH_TRANSLATED",
    "QUERY_STRING",
    "REMOTE_ADDR",
    "REMOTE_HOST",
    "REMOTE_PORT",
    "REMOTE_USER",
    "REQUEST_METHOD",
    "REQUEST_URI",
    "SCRIPT_FILENAME",
    "SCRIPT_NAME",
    "SERVER_ADDR",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "SERVER_SOFTWARE",
}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_root(tmp_path_factory.mktemp("meta"), SCRIPTS).resolve()


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[ServerProcess]:
    pool = ServerPool()
    try:
        # A variable of the server's own environment, to prove that it never reaches a script.
        yield pool(
            [sys.executable, "-m", "servers", "cgi", "--port", "0", "--root", str(root)],
            env={"GATEWAYLAB_CANARY": "from the server's environment"},
            name="cgi",
        )
    finally:
        pool.stop_all()


def env_of(server: ServerProcess, request: bytes) -> dict[str, str]:
    env: dict[str, str] = dump(exchange(server, request))["env"]
    return env


# -- §4.1: the meta-variables -----------------------------------------------------------------
def test_every_meta_variable_for_a_get(server: ServerProcess, root: Path) -> None:
    with connect(server) as sock:
        client_port = sock.getsockname()[1]
        sock.sendall(get("/dump/extra/path?x=1&y=%20", "Host: example.test:8123"))
        raw = b"".join(iter(lambda: sock.recv(65536), b""))
    report = dump(raw)
    env = report["env"]
    assert env["GATEWAY_INTERFACE"] == "CGI/1.1"  # §4.1.4
    assert env["REQUEST_METHOD"] == "GET"  # §4.1.12
    assert env["SCRIPT_NAME"] == "/dump"  # §4.1.13
    assert env["PATH_INFO"] == "/extra/path"  # §4.1.5
    assert env["PATH_TRANSLATED"] == f"{root}/extra/path"  # §4.1.6: PATH_INFO mapped on the root
    assert env["QUERY_STRING"] == "x=1&y=%20"  # §4.1.7: still encoded
    assert env["SERVER_NAME"] == "example.test"  # §4.1.14: from Host, without its port
    assert env["SERVER_PORT"] == str(server.port)  # §4.1.15: the port we listen on
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"  # §4.1.16
    assert env["SERVER_SOFTWARE"] == "gatewaylab-cgi/0.1"  # §4.1.17
    assert b"\r\nServer: gatewaylab-cgi/0.1\r\n" in raw  # "...should match the Server header"
    assert env["REMOTE_ADDR"] == env["REMOTE_HOST"] == "127.0.0.1"  # §4.1.8, §4.1.9
    # The de facto ones that real scripts (PHP above all) expect.
    assert env["REMOTE_PORT"] == str(client_port)
    assert env["SERVER_ADDR"] == "127.0.0.1"
    assert env["REQUEST_URI"] == "/dump/extra/path?x=1&y=%20"
    assert env["SCRIPT_FILENAME"] == str(root / "dump")
    assert env["DOCUMENT_ROOT"] == str(root)
    # §4.1.2, §4.1.3: no body, so neither; §4.1.1, §4.1.11: no authentication, so neither.
    for unset in ("CONTENT_LENGTH", "CONTENT_TYPE", "AUTH_TYPE", "REMOTE_USER"):
        assert unset not in env
    assert report["cwd"] == str(root)  # §7.2: the script's own directory


def test_query_string_is_always_set_and_path_translated_only_with_path_info(
    server: ServerProcess,
) -> None:
    env = env_of(server, get("/dump"))
    assert env["QUERY_STRING"] == ""  # §4.1.7: set even when there is no query
    assert env["PATH_INFO"] == ""
    assert "PATH_TRANSLATED" not in env  # §4.1.6: unset when PATH_INFO is NULL


def test_path_info_is_decoded_and_keeps_a_trailing_slash(server: ServerProcess) -> None:
    env = env_of(server, get("/dump/a%20b/c%3Fd/"))
    assert env["SCRIPT_NAME"] == "/dump"
    assert env["PATH_INFO"] == "/a b/c?d/"  # §4.1.5: decoded, "/" at the end kept
    assert env["QUERY_STRING"] == ""
    assert env_of(server, get("/dump/"))["PATH_INFO"] == "/"


def test_script_name_may_have_several_segments(server: ServerProcess, root: Path) -> None:
    env = env_of(server, get("/sub/dump/x"))
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/sub/dump", "/x")
    assert env["SCRIPT_FILENAME"] == str(root / "sub" / "dump")


def test_script_uri_gives_the_same_variables_again(server: ServerProcess) -> None:
    # §3.3: scheme://SERVER_NAME:SERVER_PORT + enc(SCRIPT_NAME) + enc(PATH_INFO) + ?QUERY_STRING
    # names the same script with the same PATH_INFO and QUERY_STRING.
    first = env_of(server, get("/sub/dump/%C3%A9t%C3%A9/two%20words?q=a%26b"))
    again_target = quote(first["SCRIPT_NAME"] + first["PATH_INFO"].encode("latin-1").decode())
    again = env_of(server, get(f"{again_target}?{first['QUERY_STRING']}"))
    for name in ("SCRIPT_NAME", "PATH_INFO", "QUERY_STRING"):
        assert again[name] == first[name]
    assert first["PATH_INFO"].encode("latin-1") == "/été/two words".encode()


def test_http_10_request_without_host(server: ServerProcess) -> None:
    env = env_of(server, b"GET /dump HTTP/1.0\r\n\r\n")
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"  # §4.1.16: the request's protocol
    assert env["SERVER_NAME"] == "127.0.0.1"  # §4.1.14: no Host, so our address


def test_request_method_is_passed_as_received(server: ServerProcess) -> None:
    assert env_of(server, get("/dump", method="PATCH"))["REQUEST_METHOD"] == "PATCH"


# -- §4.1.18: header fields as HTTP_* ---------------------------------------------------------
def test_header_fields_become_http_variables(server: ServerProcess) -> None:
    env = env_of(server, get("/dump", "X-Custom-Header: some value", "User-Agent: tester/1"))
    assert env["HTTP_X_CUSTOM_HEADER"] == "some value"
    assert env["HTTP_USER_AGENT"] == "tester/1"
    assert env["HTTP_HOST"] == "test"


def test_repeated_fields_are_merged_into_one_variable(server: ServerProcess) -> None:
    env = env_of(server, get("/dump", "X-Multi: a", "Cookie: a=1", "X-Multi: b", "Cookie: b=2"))
    assert env["HTTP_X_MULTI"] == "a, b"  # a list field: comma-joined
    assert env["HTTP_COOKIE"] == "a=1; b=2"  # Cookie's own separator


def test_credentials_and_body_fields_are_not_passed(server: ServerProcess) -> None:
    request = (
        b"POST /dump HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
        b"Authorization: Basic dXNlcjpwYXNz\r\nProxy-Authorization: Basic eDp5\r\n"
        b"Content-Type: text/x-test\r\nContent-Length: 4\r\n\r\nbody"
    )
    env = env_of(server, request)
    # §4.1.18 and §9.2: credentials stay with the server; Content-* are CONTENT_*.
    for hidden in ("AUTHORIZATION", "PROXY_AUTHORIZATION", "CONTENT_TYPE", "CONTENT_LENGTH"):
        assert f"HTTP_{hidden}" not in env
    assert (env["CONTENT_TYPE"], env["CONTENT_LENGTH"]) == ("text/x-test", "4")
    assert "AUTH_TYPE" not in env  # the server authenticated nobody


def test_names_with_underscores_are_dropped(server: ServerProcess) -> None:
    # X-Foo and X_Foo would both be HTTP_X_FOO: a client could forge a header that a proxy
    # in front believed it had removed. Only the "-" spelling gets through.
    env = env_of(server, get("/dump", "X_Foo: forged", "X-Foo: real"))
    assert env["HTTP_X_FOO"] == "real"
    env = env_of(server, get("/dump", "X_Only: forged"))
    assert "HTTP_X_ONLY" not in env
    assert "forged" not in str(env)


def test_proxy_header_never_becomes_http_proxy(server: ServerProcess) -> None:
    # httpoxy (CVE-2016-5385 and siblings): HTTP_PROXY would steer the script's own requests.
    env = env_of(server, get("/dump", "Proxy: http://evil.test:3128/"))
    assert "HTTP_PROXY" not in env
    assert "evil.test" not in str(env)


def test_connection_level_fields_are_not_passed(server: ServerProcess) -> None:
    env = env_of(server, get("/dump", "TE: trailers", "Keep-Alive: 5"))
    for name in ("HTTP_CONNECTION", "HTTP_TE", "HTTP_KEEP_ALIVE"):
        assert name not in env


def test_environment_is_built_from_scratch(server: ServerProcess) -> None:
    env = env_of(server, get("/dump", "Path: /evil/bin", "X-Anything: 1"))
    assert "GATEWAYLAB_CANARY" not in env  # nothing of the server's own environment
    assert {name for name in env if not name.startswith("HTTP_")} <= SERVER_VARIABLES
    # A header can only ever make an HTTP_* name, never replace a variable of the server.
    assert env["HTTP_PATH"] == "/evil/bin"
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)


# -- §4.2: the body on stdin ----------------------------------------------------------------
def test_body_reaches_stdin_with_its_length_and_type(server: ServerProcess) -> None:
    body = bytes(range(256)) * 400
    reply = httpx.post(
        server.url + "dump", content=body, headers={"Content-Type": "x/y"}, trust_env=False
    )
    report = reply.json()
    assert report["env"]["CONTENT_LENGTH"] == str(len(body))
    assert report["env"]["CONTENT_TYPE"] == "x/y"
    assert report["stdin"].encode("latin-1") == body


def test_chunked_body_is_dechunked_and_counted(server: ServerProcess) -> None:
    # §4.2: the server MUST remove the transfer coding and set CONTENT_LENGTH to what is left.
    request = (
        b"POST /dump HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n"
    )
    report = dump(exchange(server, request))
    assert report["stdin"] == "hello world!"
    assert report["env"]["CONTENT_LENGTH"] == "12"
    assert "HTTP_TRANSFER_ENCODING" not in report["env"]


@pytest.mark.parametrize("framing", ["Content-Length: 5", "Transfer-Encoding: chunked"])
def test_expect_100_continue_comes_before_the_body(server: ServerProcess, framing: str) -> None:
    head = f"POST /dump HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{framing}\r\n"
    body = b"hello" if framing.startswith("Content") else b"5\r\nhello\r\n0\r\n\r\n"
    with connect(server) as sock:
        sock.sendall(head.encode() + b"Expect: 100-continue\r\n\r\n")
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            interim += sock.recv(1)  # byte by byte: nothing of the final answer is read here
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        raw = b"".join(iter(lambda: sock.recv(65536), b""))
    report = dump(raw)
    assert report["stdin"] == "hello"
    assert report["env"]["CONTENT_LENGTH"] == "5"
    assert "HTTP_EXPECT" not in report["env"]


# -- §4.4 and §7.2: how the script is run -------------------------------------------------------
@pytest.mark.parametrize("query", ["-s", "-d+allow_url_include%3d1", "word+another"])
def test_no_indexed_query_argv(server: ServerProcess, root: Path, query: str) -> None:
    # §4.4 would pass "-s" as argv[1]; that is how php-cgi leaked its source (CVE-2012-1823).
    report = dump(exchange(server, get(f"/dump?{query}")))
    assert report["argv"] == [str(root / "dump")]
    assert report["env"]["QUERY_STRING"] == query


def test_script_holds_only_stdin_stdout_and_stderr(server: ServerProcess) -> None:
    report = dump(exchange(server, get("/dump")))
    fds = report["fds"]
    assert set(fds) == {"0", "1", "2"}  # neither the listening socket nor the client's
    assert fds["0"].startswith("pipe:") and fds["1"].startswith("pipe:")
    assert not any(target.startswith("socket:") for target in fds.values())


def test_script_leads_its_own_process_group(server: ServerProcess) -> None:
    report = dump(exchange(server, get("/dump")))
    assert report["pgid"] == report["pid"]  # so that a timeout can kill all of it
    assert report["pgid"] != server.pid


def test_script_starts_with_no_signal_ignored(server: ServerProcess) -> None:
    # Python ignores SIGPIPE and SIGXFSZ, the connection process SIGINT; an ignored signal
    # stays ignored through execve, so a script would inherit the server's choices.
    raw = exchange(server, get("/sigign"))
    mask = int(re.search(rb"SigIgn:\s*([0-9a-f]+)", raw)[1], 16)  # type: ignore[index]
    for number in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
        assert not mask & (1 << (number - 1)), f"{signal.Signals(number).name} is ignored"


def test_paths_outside_ascii_in_the_root(tmp_path: Path, start_server: ServerPool) -> None:
    # The root's name is file-system bytes (UTF-8 here), PATH_INFO is the URL's bytes:
    # PATH_TRANSLATED joins the two as bytes, neither re-encoded.
    root = make_root(tmp_path / "корень", {"dump": DUMP}).resolve()
    server = start_cgi(start_server, root)
    env = env_of(server, get("/dump/%E9t%E9"))
    assert env["PATH_INFO"].encode("latin-1") == b"/\xe9t\xe9"
    expected = os.fsencode(root) + b"/\xe9t\xe9"
    assert env["PATH_TRANSLATED"].encode("latin-1") == expected
    assert env["DOCUMENT_ROOT"].encode("latin-1") == os.fsencode(root)
