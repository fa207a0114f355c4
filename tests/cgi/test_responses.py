"""RFC 3875 §5 and §6, one item at a time: how a script's output becomes an HTTP response.

The scripts are a line or two of sh each, printing exactly the CGI output under test. The
checks read raw bytes off the socket where the framing is the point (HEAD, NPH, chunked or
close), so that nothing between the server and the assertion tidies the answer up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers.launch import ServerProcess
from tests.cgi.support import (
    PYTHON,
    SH,
    connect,
    dechunk,
    exchange,
    get,
    make_root,
    read_to_eof,
    split,
    start_cgi,
)
from tests.conftest import ServerPool

SCRIPTS = {
    # §6.2.1 document responses, with each line end a script may use (§6.2, §7.2).
    "doc-lf": SH + r"printf 'Content-Type: text/plain\nX-Script: lf\n\nbody\n'",
    "doc-crlf": SH + r"printf 'Content-Type: text/plain\r\nX-Script: crlf\r\n\r\nbody\n'",
    "doc-mixed": SH + r"printf 'Content-Type: text/plain\r\nX-Script: mixed\n\r\nbody\n'",
    # §6.3.3: Status, with its own reason phrase or none.
    "status": SH + r"printf 'Status: 418 Short and stout\nContent-Type: text/plain\n\ntea\n'",
    "status-bare": SH + r"printf 'Status: 201\nContent-Type: text/plain\n\n'",
    # §6.2.2 local redirect, served inside the server; "loop" counts how often it ran.
    "local": SH + r"printf 'Location: /target?from=local\n\n'",
    "target": SH
    + 'printf "Content-Type: text/plain\\n\\n%s %s %s\\n" '
    + '"$REQUEST_METHOD" "$QUERY_STRING" "${CONTENT_LENGTH:-no-body}"',
    "loop": SH + "echo ran >> loop.count\nprintf 'Location: /loop\\n\\n'",
    # §6.2.3 client redirect, §6.2.4 client redirect with document.
    "client": SH + r"printf 'Location: http://example.test/elsewhere\n\n'",
    "client-doc": SH
    + r"printf 'Status: 301 Moved Permanently\nLocation: http://example.test/new\n"
    + r"""Content-Type: text/html\n\n<a href="http://example.test/new">moved</a>\n'""",
    # No Content-Length: the server frames the body (chunked, or the end of the connection).
    "nolength": SH + r"printf 'Content-Type: text/plain\n\none\n'; sleep 0.05; printf 'two\n'",
    # §6.3.4: connection-level fields are the server's; a script's are dropped.
    "hop": SH
    + r"printf 'Content-Type: text/plain\nConnection: close\nTransfer-Encoding: chunked\n"
    + r"Content-Length: 3\n\nabc'",
    # §5: a non-parsed-header script speaks HTTP itself.
    "nph-raw": SH + r"printf 'HTTP/1.1 299 Custom\r\nX-Nph: yes\r\n\r\nraw bytes, unmodified\n'",
    # Writes 300 KiB before it reads its 300 KiB of stdin: more than a pipe holds each way.
    "write-first": PYTHON
    + "import os, sys\n"
    + "sys.stdout.buffer.write(b'Content-Type: text/plain\\n\\n' + b'x' * 307200)\n"
    + "sys.stdout.flush()\n"
    + "data = sys.stdin.buffer.read(int(os.environ['CONTENT_LENGTH']))\n"
    + "sys.stdout.buffer.write(f'read {len(data)}\\n'.encode())\n",
    # Answers at once and reads none of its body.
    "ignore-body": SH + r"printf 'Content-Type: text/plain\nContent-Length: 2\n\nok'",
}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_root(tmp_path_factory.mktemp("responses"), SCRIPTS)


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[ServerProcess]:
    pool = ServerPool()
    try:
        # A long idle timeout, so that a connection the server forgets to close hangs the
        # test (and fails it on the socket's timeout) instead of closing on its own.
        yield start_cgi(pool, root, "--idle-timeout", "60")
    finally:
        pool.stop_all()


# -- §6.2.1 document response, §6.3.3 Status ------------------------------------------------------
@pytest.mark.parametrize("script", ["doc-lf", "doc-crlf", "doc-mixed"])
def test_document_with_lf_or_crlf_lines(server: ServerProcess, script: str) -> None:
    status, headers, body = split(exchange(server, get(f"/{script}")))
    assert status == 200  # §6.3.3: no Status means 200
    assert headers["content-type"] == "text/plain"
    assert headers["x-script"] == script.removeprefix("doc-")  # other fields pass through
    assert dechunk(body) == b"body\n"


def test_status_sets_code_and_reason(server: ServerProcess) -> None:
    raw = exchange(server, get("/status"))
    assert raw.startswith(b"HTTP/1.1 418 Short and stout\r\n")
    assert b"\r\nStatus:" not in raw  # a CGI field, not an HTTP one
    assert dechunk(split(raw)[2]) == b"tea\n"
    assert exchange(server, get("/status-bare")).startswith(b"HTTP/1.1 201 Created\r\n")


# -- §6.2.2 local redirect ------------------------------------------------------------------
def test_local_redirect_is_served_inside_the_server(server: ServerProcess) -> None:
    status, headers, body = split(exchange(server, get("/local")))
    assert status == 200
    assert "location" not in headers  # the client never hears of it
    assert dechunk(body) == b"GET from=local no-body\n"


def test_local_redirect_of_a_post_is_a_get_without_the_body(server: ServerProcess) -> None:
    # The body was the first script's; the connection is still usable afterwards, so the
    # server read what was left of it.
    request = (
        b"POST /local HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 10\r\n\r\n0123456789"
    )
    raw = exchange(server, request + get("/doc-lf"))
    assert raw.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert b"GET from=local no-body\n" in raw


def test_local_redirects_are_bounded(server: ServerProcess, root: Path) -> None:
    (root / "loop.count").unlink(missing_ok=True)
    status, _, body = split(exchange(server, get("/loop")))
    assert status == 500
    assert b"local redirects" in body
    # The first run and ten redirects (Apache's LimitInternalRecursion), then no more.
    assert (root / "loop.count").read_text().count("ran") == 11


# -- §6.2.3 and §6.2.4 client redirects -------------------------------------------------------
def test_client_redirect_is_a_302(server: ServerProcess) -> None:
    status, headers, _ = split(exchange(server, get("/client")))
    assert status == 302
    assert headers["location"] == "http://example.test/elsewhere"


def test_client_redirect_with_document(server: ServerProcess) -> None:
    status, headers, body = split(exchange(server, get("/client-doc")))
    assert status == 301
    assert headers["location"] == "http://example.test/new"
    assert headers["content-type"] == "text/html"
    assert dechunk(body) == b'<a href="http://example.test/new">moved</a>\n'


# -- framing: the server's job ----------------------------------------------------------------
def test_no_content_length_is_chunked_for_http_11(server: ServerProcess) -> None:
    status, headers, body = split(exchange(server, get("/nolength")))
    assert status == 200
    assert headers["transfer-encoding"] == "chunked"
    assert "content-length" not in headers
    assert dechunk(body) == b"one\ntwo\n"


def test_no_content_length_ends_with_the_connection_for_http_10(server: ServerProcess) -> None:
    # RFC 9112 §6.1: never chunked to an HTTP/1.0 client. Even though this client asked to
    # keep the connection, its end is the only way left to mark the end of the body.
    raw = exchange(server, b"GET /nolength HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    status, headers, body = split(raw)
    assert status == 200
    assert "transfer-encoding" not in headers and "content-length" not in headers
    assert body == b"one\ntwo\n"


def test_script_connection_fields_are_dropped(server: ServerProcess) -> None:
    # The script said "Connection: close" and "Transfer-Encoding: chunked"; the server keeps
    # its own framing (the script's Content-Length) and the connection.
    raw = exchange(server, b"GET /hop HTTP/1.1\r\nHost: test\r\n\r\n" + get("/doc-lf"))
    first, second = raw.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert b"Content-Length: 3\r\n" in first and b"Transfer-Encoding" not in first
    assert first.endswith(b"\r\n\r\nabc")
    assert second.endswith(b"0\r\n\r\n")


def test_head_sends_no_body_and_keeps_the_connection(server: ServerProcess) -> None:
    # The script writes a body anyway; §4.3.3: the server MUST discard it. Were one byte of
    # it sent, the second response would not start right after the first one's head.
    raw = exchange(server, b"HEAD /doc-lf HTTP/1.1\r\nHost: test\r\n\r\n" + get("/doc-lf"))
    head_end = raw.index(b"\r\n\r\n") + 4
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert raw[head_end:].startswith(b"HTTP/1.1 200 OK\r\n")
    assert dechunk(split(raw[head_end:])[2]) == b"body\n"


# -- §5 NPH ---------------------------------------------------------------------------------------
def test_nph_output_is_passed_through_unmodified_then_closed(server: ServerProcess) -> None:
    # No "Connection: close" in the request: the server closes anyway (§5.2: no keep-alive
    # for an NPH response), and it adds nothing, not even Date or Server.
    raw = exchange(server, b"GET /nph-raw HTTP/1.1\r\nHost: test\r\n\r\n")
    assert raw == b"HTTP/1.1 299 Custom\r\nX-Nph: yes\r\n\r\nraw bytes, unmodified\n"


# -- stdin and stdout at once ---------------------------------------------------------------
def test_script_that_writes_before_reading_does_not_deadlock(server: ServerProcess) -> None:
    body = b"b" * 307200
    head = b"POST /write-first HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
    raw = exchange(server, head + b"Content-Length: 307200\r\n\r\n" + body)
    status, _, answer = split(raw)
    assert status == 200
    assert dechunk(answer) == b"x" * 307200 + b"read 307200\n"


def test_unread_body_is_drained_before_the_next_request(server: ServerProcess) -> None:
    body = hashlib.sha256(b"x").digest() * 32768  # 1 MiB that the script never reads
    request = b"POST /ignore-body HTTP/1.1\r\nHost: test\r\nContent-Length: 1048576\r\n\r\n"
    with connect(server) as sock:
        sock.sendall(request + body + get("/doc-lf"))
        raw = read_to_eof(sock)
    first, second = raw.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert first.endswith(b"\r\n\r\nok")
    assert dechunk(split(b"HTTP/1.1 200 OK\r\n" + second)[2]) == b"body\n"
