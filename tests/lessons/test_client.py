"""The lesson client: requests as written become the right bytes, responses are framed
the way RFC 9112 frames them, and bytes are shown with their line ends visible."""

from __future__ import annotations

import socket
import threading

import pytest
from rich.console import Console

from lessons.client import (
    _parse,
    byte_lines,
    count_requests,
    encode_request,
    read_responses,
    request_methods,
)


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("GET / HTTP/1.1\nHost: x\n\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        # A body ends where its bytes end: no CRLF after the last line that is not empty.
        (
            "POST / HTTP/1.1\nContent-Length: 5\n\nhello\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        ),
        # A chunked body ends with an empty line, so every line gets its CRLF.
        ("5\nhello\n0\n\n", b"5\r\nhello\r\n0\r\n\r\n"),
        ("hello\n", b"hello"),
        ("", b""),
        (
            "GET / HTTP/1.1\nHost: x\n\nGET /2 HTTP/1.1\nHost: x\n\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
    ],
)
def test_encode_request(text: str, wire: bytes) -> None:
    assert encode_request(text) == wire


def test_encode_request_with_bare_lf() -> None:
    assert encode_request("GET / HTTP/1.1\nHost: x\n\n", eol="lf") == b"GET / HTTP/1.1\nHost: x\n\n"
    with pytest.raises(ValueError, match="eol"):
        encode_request("x", eol="cr")


def test_request_lines_are_counted_for_pipelining() -> None:
    data = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\n\r\n"
    assert request_methods(data) == [b"GET", b"HEAD"]
    assert count_requests(b"hello") == 0
    assert count_requests(b"GET / HTTP/1.1\nHost: x\n\n") == 1  # bare LF still counts


def test_parse_frames_responses() -> None:
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"  # HEAD: no body whatever it says
        b"HTTP/1.1 204 No Content\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\npart"
    )
    found = _parse(data, [b"POST", b"GET", b"HEAD", b"GET", b"GET"])
    assert [(r.status, r.complete, r.body_bytes) for r in found] == [
        (100, True, 0),
        (200, True, 2),
        (200, True, 3),
        (200, True, 0),
        (204, True, 0),
        (200, False, 4),
    ]
    assert found[0].interim and str(found[1]) == "200 OK"


def _serve_once(reply: bytes, close: bool) -> tuple[socket.socket, threading.Thread]:
    client, server = socket.socketpair()

    def run() -> None:
        server.recv(65536)
        server.sendall(reply)
        if close:
            server.close()

    thread = threading.Thread(target=run)
    thread.start()
    client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    return client, thread


def test_read_waits_for_the_announced_close() -> None:
    reply = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbad"
    client, thread = _serve_once(reply, close=True)
    with client:
        result = read_responses(client, [b"GET"], expected=1, timeout=5)
    thread.join()
    assert [r.status for r in result.finals] == [400]
    assert result.closed and not result.timed_out
    assert "the server closed the connection" in result.summary()


def test_read_returns_at_once_on_keep_alive() -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    client, thread = _serve_once(reply, close=False)
    with client:
        result = read_responses(client, [b"GET"], expected=1, timeout=5)
    thread.join()
    assert not result.closed and not result.timed_out
    assert result.finals[0].body_bytes == 2


def test_read_until_quiet_for_an_interim_answer() -> None:
    client, thread = _serve_once(b"HTTP/1.1 100 Continue\r\n\r\n", close=False)
    with client:
        result = read_responses(client, [b"POST"], expected=0, timeout=5, quiet=0.2)
    thread.join()
    assert [r.status for r in result.responses] == [100] and not result.timed_out


def _plain(lines: list[object]) -> list[str]:
    console = Console(width=200, record=True, color_system=None)
    for line in lines:
        console.print(line)
    return console.export_text().splitlines()


def test_byte_lines_show_line_ends_and_cut_long_lines() -> None:
    shown = _plain(byte_lines(b"GET / HTTP/1.1\r\nHost: x\n\r\n" + b"a" * 300, max_width=40))
    assert shown[0] == "GET / HTTP/1.1\\r\\n"
    assert shown[1] == "Host: x\\n"  # a bare LF, shown (and coloured red on a terminal)
    assert shown[2] == "\\r\\n"
    assert shown[3].startswith("a" * 40 + "… (300 bytes)")
    many = _plain(byte_lines(b"x\r\n" * 50, max_lines=5))
    assert many[-1] == "… 45 more lines"
