"""PEP 3333, the response half: start_response ("The start_response() Callable"), write()
("The write() Callable"), the iterable and its close() ("Buffering and Streaming"),
wsgi.file_wrapper ("Optional Platform-Specific File Handling"), Content-Length ("Handling
the Content-Length Header") and errors ("Error Handling").

An app that breaks the contract gets a plain 500 if nothing was sent yet, and the reason,
with its traceback, goes to the server's log (wsgi.errors); once the head is out, all the
server can do is close the connection, which the client sees as a body cut short.
"""

from __future__ import annotations

import os

import pytest

from servers.launch import ServerProcess

from .apps import file_content
from .support import Gates, Wire, exchange, exchange_and_close, get, wait_for_output

PLAIN_500 = b"500 Internal Server Error: the application failed; see the server log\n"
HOP_BY_HOP = (
    "Connection",
    "Keep-Alive",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "TE",
    "Trailers",
    "Transfer-Encoding",
    "Upgrade",
)


def assert_refused(server: ServerProcess, path: str, reason: str) -> None:
    """A plain 500, nothing of the app's answer on the wire, the exact reason in the log."""
    since = server.output_size()
    reply = exchange(server, get(path))
    assert (reply.status, reply.body) == (500, PLAIN_500)
    assert b"x-injected" not in reply.headers
    log = wait_for_output(server, reason, since)
    assert f"wsgi: the application failed on GET {path}" in log and "Traceback" in log


# -- start_response ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", HOP_BY_HOP)
def test_hop_by_hop_headers_from_the_app_are_refused(server: ServerProcess, name: str) -> None:
    """PEP 3333 "Other HTTP Features": they describe one connection, which is the server's."""
    assert_refused(server, f"/bare/header?name={name}", f"hop-by-hop header {name!r}")


def test_header_lines_are_judged_the_same_the_second_time(server: ServerProcess) -> None:
    """The server remembers the lines it has checked: a good one is sent as it was the
    first time, and a refused one is refused again, never remembered as good."""
    for _ in range(2):
        reply = exchange(server, get("/bare/header?name=X-Again&value=ok"))
        assert (reply.status, reply.headers[b"x-again"]) == (200, b"ok")
        assert_refused(server, "/bare/header?name=X-Again&value=%E2%82%AC", "must be latin-1")


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/bare/header?name=X-A&value=a%0D%0AX-Injected:%20yes", "control characters"),
        ("/bare/header?name=X-A%0D%0AX-Injected&value=b", "is not an RFC 9110 token"),
        ("/bare/header?name=X-A:&value=b", "is not an RFC 9110 token"),
        ("/bare/header?name=X-A&value=%E2%82%AC", "a value must be latin-1"),
        ("/bare/status?s=200OK", "expected a status like '200 OK' (str), got '200OK'"),
        ("/bare/status?s=200%20OK%0D%0AX-Injected:%20yes", "expected a status like '200 OK'"),
        ("/bare/int-status", "expected a status like '200 OK' (str), got 200"),
        ("/bare/tuple-headers", "expected the headers as a list, got tuple"),
    ],
    ids=[
        "crlf-in-value",
        "crlf-in-name",
        "colon-in-name",
        "non-latin-1",
        "status-without-space",
        "crlf-in-status",
        "int-status",
        "tuple-of-headers",
    ],
)
def test_bad_status_and_headers_are_refused_when_start_response_is_called(
    server: ServerProcess, path: str, reason: str
) -> None:
    """Checked at the call, so the error is raised in the app's own frame (the traceback
    shows the app's line); CR/LF anywhere would split the response (waitress PR #121)."""
    assert_refused(server, path, reason)


@pytest.mark.parametrize("path", ["/bare/twice", "/bare/twice-after-refusal"])
def test_a_second_start_response_without_exc_info_is_fatal(
    server: ServerProcess, path: str
) -> None:
    """Even when the first call was refused: a call is a call."""
    assert_refused(server, path, "start_response() called twice without exc_info")


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/bare/str-body", "expected bytes from the application, got str"),
        ("/bare/bytes-result", "expected bytes from the application, got int"),
        ("/bare/no-start", "body data before start_response()"),
        ("/bare/empty-no-start", "the application's iterable ended before start_response()"),
    ],
)
def test_a_broken_iterable_is_a_500(server: ServerProcess, path: str, reason: str) -> None:
    assert_refused(server, path, reason)


def test_exc_info_before_the_head_went_out_replaces_the_answer(server: ServerProcess) -> None:
    reply = exchange(server, get("/exc-before"))
    assert reply.status == 503
    assert reply.headers[b"x-replaced"] == b"yes" and b"x-first" not in reply.headers
    assert reply.body == b"replaced\n"


def test_exc_info_after_the_head_went_out_is_re_raised(server: ServerProcess, gates: Gates) -> None:
    """Too late to change the status: start_response raises the app's own error, which the
    server logs, and the connection closes with the body cut short."""
    since = server.output_size()
    reply, closed = exchange_and_close(server, get("/exc-after?token=exc-after"))
    assert (reply.status, reply.body, reply.complete, closed) == (200, b"partial\n", False, True)
    log = wait_for_output(server, "ValueError: oops-after-the-head", since)
    assert "Traceback" in log
    gates.wait("exc-after", "closed")


# -- write(), and when the head goes out ---------------------------------------------------------
def test_write_output_comes_before_the_iterable(server: ServerProcess) -> None:
    reply = exchange(server, get("/write"))
    assert (reply.status, reply.body, reply.complete) == (200, b"one,two,three\n", True)


def test_headers_wait_for_the_first_non_empty_chunk(server: ServerProcess, gates: Gates) -> None:
    """start_response only stores the head; an empty chunk sends nothing; the head goes out
    with the first byte of body (PEP 3333 "Buffering and Streaming")."""
    with Wire(server) as wire:
        wire.send(get("/empty-first?token=empty-first"))
        gates.wait("empty-first")  # the app said 200 and yielded b"": nothing may be sent
        assert wire.quiet_for(0.3), "the head went out before any body byte"
        gates.release("empty-first")
        reply = wire.reply()
        assert (reply.status, reply.body) == (200, b"after the pause\n")


# -- close(), on every path ----------------------------------------------------------------------
def test_close_is_called_after_a_complete_response(server: ServerProcess, gates: Gates) -> None:
    reply = exchange(server, get("/close?token=close-ok&mode=ok"))
    assert reply.body == b"chunk 0\nchunk 1\nchunk 2\n"
    gates.wait("close-ok", "closed")


def test_close_is_called_when_iteration_fails_before_the_head(
    server: ServerProcess, gates: Gates
) -> None:
    reply = exchange(server, get("/close?token=close-early&mode=raise-early"))
    assert (reply.status, reply.body) == (500, PLAIN_500)
    gates.wait("close-early", "closed")


def test_close_is_called_when_iteration_fails_after_the_head(
    server: ServerProcess, gates: Gates
) -> None:
    reply, closed = exchange_and_close(server, get("/close?token=close-late&mode=raise"))
    assert (reply.status, reply.body, reply.complete, closed) == (200, b"chunk 0\n", False, True)
    gates.wait("close-late", "closed")


def test_close_is_called_when_the_client_disconnects(server: ServerProcess, gates: Gates) -> None:
    """The app streams 600 chunks 50 ms apart; the client leaves after the first. The next
    send fails, the server stops iterating and calls close() (apps must tolerate it)."""
    with Wire(server) as wire:
        wire.send(get("/close?token=close-gone&mode=slow"))
        received = b""
        while b"chunk 0\n" not in received:
            received += wire.sock.recv(4096)
    gates.wait("close-gone", "closed")


# -- wsgi.file_wrapper ---------------------------------------------------------------------------
def test_file_wrapper_sends_the_file_with_its_length(server: ServerProcess, gates: Gates) -> None:
    """A real file reaches the server as our FileWrapper: sendfile(2), with Content-Length
    taken from the file's size, and the file's close() called."""
    reply = exchange(server, get("/bare/file?size=100000&token=fw-file"))
    assert reply.headers[b"content-length"] == b"100000"
    assert reply.body == file_content(100_000) and reply.complete
    gates.wait("fw-file", "closed")


def test_file_wrapper_stops_at_the_apps_content_length(server: ServerProcess) -> None:
    with Wire(server) as wire:
        wire.send(get("/bare/file?size=100000&declared=1000"))
        reply = wire.reply()
        assert reply.headers[b"content-length"] == b"1000"
        assert reply.body == file_content(1000) and reply.complete
        wire.send(get("/thread"))  # the connection is intact for the next request
        assert wire.reply().status == 200


def test_file_wrapper_of_an_object_without_a_descriptor_is_read(
    server: ServerProcess, gates: Gates
) -> None:
    """No fileno(): no sendfile, but it must still work, through read() and close()."""
    reply = exchange(server, get("/bare/file?size=5000&kind=bytes&token=fw-bytes"))
    assert reply.headers[b"transfer-encoding"] == b"chunked"
    assert reply.body == file_content(5000) and reply.complete
    gates.wait("fw-bytes", "closed")


def test_file_wrapper_hidden_by_middleware_is_iterated(server: ServerProcess) -> None:
    """Under the validator the server gets the validator's iterator, not a FileWrapper:
    the fast path must not be assumed (PEP 3333: only if isinstance(result, ...))."""
    reply = exchange(server, get("/file?size=70000"))
    assert reply.body == file_content(70_000) and reply.complete


def test_file_wrapper_after_write(server: ServerProcess) -> None:
    reply = exchange(server, get("/bare/write-then-file?size=5000"))
    assert reply.headers[b"content-length"] == b"5007"
    assert reply.body == b"prefix:" + file_content(5000) and reply.complete


def test_file_wrapper_answers_head_with_the_length_only(server: ServerProcess) -> None:
    request = get("/bare/file?size=5000").replace(b"GET", b"HEAD", 1)
    reply = exchange(server, request, method="HEAD")
    assert reply.headers[b"content-length"] == b"5000" and reply.body == b""


# -- Content-Length ------------------------------------------------------------------------------
def test_an_exact_content_length_keeps_the_connection(server: ServerProcess) -> None:
    with Wire(server) as wire:
        wire.send(get("/length?declared=10&chunks=5,5"))
        reply = wire.reply()
        assert (reply.body, reply.complete) == (b"0000011111", True)
        wire.send(get("/thread"))
        assert wire.reply().status == 200


@pytest.mark.parametrize(
    ("token", "query", "sent", "reason"),
    [
        ("too-much-later", "declared=7&chunks=5,5", b"00000", "more body than its Content-Length"),
        ("too-much-at-once", "declared=7&chunks=10", b"", "more body than its Content-Length"),
        ("too-little", "declared=20&chunks=5,5", b"0000011111", "10 bytes short of its Content"),
    ],
    ids=lambda value: value if isinstance(value, str) and "=" not in value else "",
)
def test_a_content_length_the_body_does_not_match_closes_and_is_logged(
    server: ServerProcess, gates: Gates, token: str, query: str, sent: bytes, reason: str
) -> None:
    """Never more than the app declared; a short body is a broken message, which only a
    close can signal. Either way close() is called and the log says what happened."""
    since = server.output_size()
    reply, closed = exchange_and_close(server, get(f"/length?{query}&token={token}"))
    assert reply.status == 200  # the head goes out even when the first chunk is too long
    assert (reply.body, reply.complete, closed) == (sent, False, True)
    wait_for_output(server, reason, since)
    gates.wait(token, "closed")


def test_a_one_item_list_gets_a_content_length(server: ServerProcess) -> None:
    reply = exchange(server, get("/bare/one-item"))
    assert reply.headers[b"content-length"] == b"10" and reply.body == b"ten bytes\n"


def test_no_content_length_from_the_app_means_chunked(server: ServerProcess) -> None:
    reply = exchange(server, get("/stream?chunks=3&delay_ms=0"))
    assert reply.headers[b"transfer-encoding"] == b"chunked"
    assert b"content-length" not in reply.headers
    assert reply.body == b"chunk 1 of 3\nchunk 2 of 3\nchunk 3 of 3\n"


def test_no_content_length_for_an_http_1_0_client_means_close(server: ServerProcess) -> None:
    """RFC 9112 §6.1: never chunked to HTTP/1.0; the close marks the end of the body."""
    with Wire(server) as wire:
        wire.send(get("/stream?chunks=3&delay_ms=0", version="1.0"))
        data = b""
        while piece := wire.sock.recv(65536):
            data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head and b"Connection: close" in head
    assert body == b"chunk 1 of 3\nchunk 2 of 3\nchunk 3 of 3\n"


# -- errors --------------------------------------------------------------------------------------
def test_an_exception_is_a_plain_500_and_a_logged_traceback(server: ServerProcess) -> None:
    since = server.output_size()
    reply = exchange(server, get("/crash"))
    assert (reply.status, reply.body) == (500, PLAIN_500)  # no traceback, no detail
    assert reply.headers[b"content-type"] == b"text/plain; charset=utf-8"
    log = wait_for_output(server, "RuntimeError: the app broke: secret-detail-42", since)
    assert "wsgi: the application failed on GET /crash" in log and "Traceback" in log


def test_sys_exit_in_the_app_is_a_500_and_the_pool_keeps_its_threads(
    server: ServerProcess,
) -> None:
    """SystemExit is not an Exception; a worker that let it through would end silently."""
    threads = len(os.listdir(f"/proc/{server.pid}/task"))
    for _ in range(3):
        assert_refused(server, "/bare/sys-exit", "SystemExit: an app called sys.exit()")
    assert len(os.listdir(f"/proc/{server.pid}/task")) == threads


def test_an_exception_after_the_head_closes_the_connection(server: ServerProcess) -> None:
    since = server.output_size()
    reply, closed = exchange_and_close(server, get("/crash-late"))
    assert (reply.status, reply.body, reply.complete, closed) == (200, b"first\n", False, True)
    wait_for_output(server, "RuntimeError: the app broke after its first chunk", since)


def test_wsgi_errors_is_the_servers_log(server: ServerProcess) -> None:
    since = server.output_size()
    assert exchange(server, get("/errors")).body == b"logged\n"
    log = wait_for_output(server, "errors-line-three", since)
    assert "errors-line-one\nerrors-line-two\nerrors-line-three\n" in log
