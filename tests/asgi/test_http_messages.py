"""HTTP messages both ways: http.request / http.disconnect in, http.response.* out, the
contract errors an app can make, and the two response extensions (trailers, pathsend).

Raw sockets where the bytes are the point (100 Continue, pipelining, a half-sent body),
read by h11 (tests/wsgi/support.py); httpx where only the meaning matters.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import pytest

from servers.launch import ServerProcess
from tests.wsgi.support import (
    Gates,
    Wire,
    exchange,
    exchange_and_close,
    get,
    post,
    wait_for_output,
)


def client(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=10, trust_env=False)


# -- http.request ------------------------------------------------------------------------------
def test_a_bodiless_request_is_one_message_without_more_body(server: ServerProcess) -> None:
    assert exchange(server, get("/body-messages")).body == b"[[0, false]]"


def test_a_streamed_body_arrives_as_several_messages(server: ServerProcess) -> None:
    # The body comes in pieces, each an http.request with more_body=True until the last;
    # the pieces add up to the body, and no piece is empty except possibly the last.
    with Wire(server) as wire:
        wire.send(b"POST /body-messages HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"first", b"second", b"third"):
            wire.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            time.sleep(0.05)  # separate reads on the server's side
        wire.send(b"0\r\n\r\n")
        messages = json.loads(wire.reply().body)
    assert sum(size for size, _ in messages) == len(b"firstsecondthird")
    assert len(messages) >= 2
    assert [more for _, more in messages] == [True] * (len(messages) - 1) + [False]


def test_bodies_round_trip_whatever_the_framing(server: ServerProcess) -> None:
    body = bytes(range(256)) * 1000
    assert exchange(server, post("/echo", body)).body == body
    assert exchange(server, post("/echo", body, chunked=True)).body == body


def test_expect_100_continue_is_sent_on_the_first_receive(server: ServerProcess) -> None:
    with Wire(server) as wire:
        head = (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        wire.send(head)
        assert wire.interim() == b"HTTP/1.1 100 Continue\r\n\r\n"
        wire.send(b"hello")
        reply = wire.reply()
    assert (reply.status, reply.body) == (200, b"hello")


def test_no_100_continue_when_the_app_never_reads(server: ServerProcess) -> None:
    # The app answers without receive(): no 100, and the connection cannot be reused,
    # since the client may still send the body it announced (RFC 9110 §10.1.1).
    head = b"GET /whoami HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    reply, closed = exchange_and_close(server, head)
    assert reply.status == 200 and reply.interim == [] and closed


# -- http.disconnect ---------------------------------------------------------------------------
def test_disconnect_is_received_and_send_then_raises_an_oserror(
    server: ServerProcess, gates: Gates
) -> None:
    with Wire(server) as wire:
        wire.send(get("/wait-disconnect?token=d1"))
        gates.wait("d1", "entered")
    # "Disconnect": the waiting receive() returns http.disconnect; spec 2.4: send() raises.
    gates.wait("d1", "send-raised")
    assert (gates.directory / "d1.disconnect").read_text() == "http.disconnect"
    assert (gates.directory / "d1.send-raised").read_text() == "ClientDisconnected"


def test_receive_after_the_response_is_a_disconnect(server: ServerProcess, gates: Gates) -> None:
    assert exchange(server, get("/disconnect-after-response?token=d2")).body == b"done\n"
    gates.wait("d2", "after")
    assert (gates.directory / "d2.after").read_text() == "http.disconnect"


# -- http.response.* ---------------------------------------------------------------------------
def test_a_whole_response_goes_out_with_content_length(server: ServerProcess) -> None:
    reply = exchange(server, get("/whoami"))
    assert reply.headers[b"content-length"] == str(len(reply.body)).encode()
    assert b"date" in reply.headers and reply.headers[b"server"] == b"gatewaylab-asgi/0.1"


def test_a_streamed_response_is_chunked_and_complete(server: ServerProcess) -> None:
    reply = exchange(server, get("/stream?mb=1"))
    assert reply.headers[b"transfer-encoding"] == b"chunked"
    assert reply.complete and len(reply.body) == 1024 * 1024


def test_the_apps_transfer_encoding_is_ignored(server: ServerProcess) -> None:
    # "Response Start": the server chooses the framing; the app's Transfer-Encoding is dropped.
    reply = exchange(server, get("/app-framing"))
    assert (reply.status, reply.body, reply.complete) == (200, b"x", True)
    assert b"transfer-encoding" not in reply.headers and reply.headers[b"content-length"] == b"1"


def test_head_gets_the_headers_and_no_body(server: ServerProcess) -> None:
    reply = exchange(server, b"HEAD /whoami HTTP/1.1\r\nHost: t\r\n\r\n", method="HEAD")
    assert reply.status == 200 and reply.body == b"" and reply.complete


def test_keep_alive_and_pipelining_answer_in_order(server: ServerProcess) -> None:
    with Wire(server) as wire:
        wire.send(get("/sleep?s=0.2") + post("/echo", b"second") + get("/echo?x"))
        assert wire.reply().body == b"slept\n"
        assert wire.reply().body == b"second"
        assert wire.reply().body == b""
        wire.send(get("/body-messages"))
        assert wire.reply().body == b"[[0, false]]"


def test_an_http_1_0_client_is_answered_and_closed(server: ServerProcess) -> None:
    reply, closed = exchange_and_close(server, b"GET /stream?mb=1 HTTP/1.0\r\n\r\n")
    # No chunked coding for 1.0 (RFC 9112 §6.1): the close marks the end of the body.
    assert reply.status == 200 and b"transfer-encoding" not in reply.headers and closed
    assert len(reply.body) == 1024 * 1024


# -- the app breaks the contract ---------------------------------------------------------------
def test_an_exception_before_the_response_is_a_500_without_details(server: ServerProcess) -> None:
    since = server.output_size()
    reply, closed = exchange_and_close(server, get("/raise-before"))
    assert reply.status == 500 and b"boom" not in reply.body and closed
    log = wait_for_output(server, "RuntimeError: boom before the response", since)
    assert "asgi: the application failed on GET /raise-before:" in log


def test_an_exception_after_the_start_closes_the_connection(server: ServerProcess) -> None:
    since = server.output_size()
    reply, closed = exchange_and_close(server, get("/raise-after"))
    assert reply.status == 200 and not reply.complete and closed  # cut short, as it must be
    wait_for_output(server, "boom in the middle of the body", since)


def test_returning_without_a_response_is_a_500(server: ServerProcess) -> None:
    since = server.output_size()
    reply = exchange(server, get("/return-early"))
    assert reply.status == 500
    wait_for_output(
        server, "ContractError: the app returned without sending 'http.response.start'", since
    )


def test_returning_in_the_middle_of_the_body_closes(server: ServerProcess) -> None:
    since = server.output_size()
    reply, closed = exchange_and_close(server, get("/return-partial"))
    assert not reply.complete and closed
    wait_for_output(server, "the app returned before its response was complete", since)


def test_returning_a_value_is_reported(server: ServerProcess) -> None:
    since = server.output_size()
    assert exchange(server, get("/returns-value")).body == b"ok\n"
    wait_for_output(server, "the app returned int 42; expected None", since)


@pytest.mark.parametrize(
    ("what", "error"),
    [
        ("str-status", "http.response.start 'status': expected an int, got str '200'"),
        ("str-headers", "expected header names and values as bytes, got ('a', 'b')"),
        ("body-first", "expected 'http.response.start', got 'http.response.body'"),
        ("no-type", "expected 'http.response.start', got None"),
        ("crlf", "illegal header value"),  # the core: response splitting refused
    ],
)
def test_broken_messages_raise_in_the_app_with_expected_and_got(
    server: ServerProcess, gates: Gates, what: str, error: str
) -> None:
    reply = exchange(server, get(f"/bad?what={what}&token=bad-{what}"))
    assert reply.status == 500  # nothing went out before: a 500 can still be sent
    gates.wait(f"bad-{what}", "error")
    assert error in (gates.directory / f"bad-{what}.error").read_text()


def test_messages_out_of_turn_name_the_expected_one(server: ServerProcess) -> None:
    body = exchange(server, get("/double-start")).body
    assert (
        body
        == b"expected 'http.response.body' or 'http.response.pathsend', got 'http.response.start'"
    )
    body = exchange(server, get("/str-body")).body
    assert body == b"http.response.body 'body': expected bytes, got str 'text'"


def test_sending_after_the_response_is_an_error(server: ServerProcess, gates: Gates) -> None:
    assert exchange(server, get("/after-complete?token=late")).body == b"ok\n"
    gates.wait("late", "error")
    assert "after the response was complete" in (gates.directory / "late.error").read_text()


# -- extensions --------------------------------------------------------------------------------
def test_trailers_go_to_a_client_that_asks_for_them(server: ServerProcess) -> None:
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(get("/trailers", "TE: trailers", "Connection: close"))
        raw = b""
        while data := sock.recv(65536):
            raw += data
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head and b"trailer: x-checksum" in head
    assert body == b"7\r\npart 1\n\r\n7\r\npart 2\n\r\n0\r\nx-checksum: abc123\r\n\r\n"


def test_trailers_are_dropped_for_a_client_that_did_not_ask(server: ServerProcess) -> None:
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(get("/trailers", "Connection: close"))
        raw = b""
        while data := sock.recv(65536):
            raw += data
    assert raw.endswith(b"7\r\npart 2\n\r\n0\r\n\r\n") and b"abc123" not in raw


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "file.bin"
    path.write_bytes(bytes(range(256)) * 4096 + b"end")  # 1 MiB and a bit
    return path


def test_pathsend_sends_the_file(server: ServerProcess, big_file: Path) -> None:
    with client(server) as http:
        reply = http.get("/pathsend", params={"path": str(big_file)})
        assert reply.content == big_file.read_bytes()
        assert reply.headers["content-length"] == str(big_file.stat().st_size)
        # Without Content-Length from the app, the file is framed in one chunk.
        reply = http.get("/pathsend", params={"path": str(big_file), "nolength": "1"})
        assert reply.content == big_file.read_bytes()
        assert reply.headers["transfer-encoding"] == "chunked"
        # HEAD: the headers, no file; the connection stays usable.
        reply = http.head("/pathsend", params={"path": str(big_file)})
        assert reply.content == b"" and reply.headers["content-length"] == str(
            big_file.stat().st_size
        )
        assert http.get("/echo?x").status_code == 200


def test_a_body_the_app_never_read_is_skipped_and_the_connection_goes_on(
    server: ServerProcess,
) -> None:
    # The app answers before reading a 1 MiB body; reading was paused for it (flow
    # control), and must resume so that the rest is read past and the next request served.
    with Wire(server) as wire:
        wire.send(post("/whoami", b"x" * 1024 * 1024) + get("/body-messages"))
        assert wire.reply().status == 200
        assert wire.reply().body == b"[[0, false]]"
